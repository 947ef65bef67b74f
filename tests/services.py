"""The one home of the processes and services tests and benchmarks start: a process on a free
port of 127.0.0.1 in its own session, waited for until it answers and stopped by its PID
(:class:`Service`); polling with a deadline (:func:`wait_for`), processes waited for until they
are gone (:func:`gone`), lines read until one appears (:func:`read_until`), posting a body
(:func:`post`); and the team's services: a throw-away PostgreSQL cluster, ``mnist-codec server``
(MLflow's tracking server), moto's S3-compatible server. A service that cannot start fails the
test that asked for it, with its log; nothing is skipped. The benchmarks import it too
(``benchmarks/`` puts ``tests/`` on their path)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
if REPO.name == "mutants":  # make mutation runs the tests from mutmut's copy, mutants/: the repository is above it
    REPO = REPO.parent
GIT = ["git", "-c", "user.name=mnist-codec tests", "-c", "user.email=tests@mnist-codec.invalid"]


def copy_project(root: Path, overrides: dict, ref: str | None = None, unrun: bool = False) -> Path:
    """A git repository at ``root`` holding the project as a clone has it: the working tree's
    files (tracked, and untracked but not ignored), or those of the commit ``ref``; params.yaml's
    sections updated from ``overrides`` (``{'data': {'protocol': 'notebook'}, 'n_seeds': 1}``).
    ``unrun``: without dvc.lock and the committed metrics, as a repository never run here."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    if ref is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    else:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split("\0")
        for rel in filter(None, listed):
            if (REPO / rel).is_file():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, root / rel)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if unrun:
        for rel in ("dvc.lock", "reports/metrics.json", "reports/metrics_detail.json"):
            (root / rel).unlink(missing_ok=True)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "a copy of mnist-codec"]):
        subprocess.run([*GIT, *cmd], cwd=root, check=True, capture_output=True)
    return root


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` of a process a test interrupts: SIGINT back to its default. A shell that
    runs the suite as a background job (``bash .ci/run &``) starts it with SIGINT ignored, every
    child inherits that, and Python then installs no handler of its own: Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    condition: Callable[[], T], timeout: float, what: str, proc: subprocess.Popen | None = None, every: float = 0.2
) -> T:
    """Call ``condition`` until it returns something true, and return that. A process ``proc``
    that exits first, or the deadline, fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode} first")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` that still run (a zombie has ended: only its parent has not read it)."""
    import psutil

    out = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
    return out


def gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until ``pids`` have ended (psutil.wait_procs; zombies count as ended); those that
    still run after ``timeout``."""
    import psutil

    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:  # wait_procs takes a zombie for a live process
        _, procs = psutil.wait_procs(procs, timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        procs = [p for p in procs if p.pid in alive([p.pid])]
    return alive(p.pid for p in procs)


def read_until(proc: subprocess.Popen, seen: Callable[[str], bool]) -> list[str]:
    """The lines of ``proc``'s text output up to and including the first that ``seen`` is true
    of (all of them, where none is)."""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if seen(line):
            break
    return lines


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, body: bytes | str, content_type: str = "application/json", timeout: float = 60) -> Reply:
    """POST ``body`` to ``url``; the reply, an HTTP error's too."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.read(), err.headers.get("Content-Type", ""))


class Service:
    """A process in its own session (so its children stop with it), logging to a file."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ):
        self.name, self.cmd, self.log_path = name, cmd, log
        self.log = open(log, "ab")  # noqa: SIM115 -- the service writes to it until stop() closes it
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            preexec_fn=ctrl_c_as_in_a_terminal,  # a terminal's foreground job: Ctrl-C not ignored
        )
        self.pid = self.proc.pid

    def wait_until(self, ready: Callable[[], object], timeout: float = 90) -> None:
        """Until ``ready()`` is true; the service's log in the error where it exits or the time runs out."""
        try:
            wait_for(ready, timeout, f"{self.name} becoming ready", self.proc)
        except AssertionError as exc:
            exited = self.proc.poll() is not None
            self.stop()
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode} while starting:\n{self.tail()}"
                if exited
                else f"{self.name} did not become ready in {timeout:.0f} s:\n{self.tail()}"
            ) from exc

    def processes(self) -> list:
        """The service's process and its descendants (psutil.Process objects)."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def tail(self, n: int = 4000) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """``sig`` (SIGINT: as Ctrl-C) to the process group led by our PID, SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        # a worker the group leader left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.log.close()


def off_loopback(pids: set[int]) -> list[str]:
    """The TCP and UDP sockets of ``pids`` with an end outside 127.0.0.0/8 (a listening
    socket's peer is a wildcard and is not checked)."""
    out = subprocess.run(["ss", "-tuanpH"], capture_output=True, text=True, check=True).stdout
    bad = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if not owners & pids:
            continue
        fields = line.split()
        state, local, peer = fields[1], fields[4], fields[5]
        ends = [local] if state in ("LISTEN", "UNCONN") else [local, peer]
        for end in ends:
            host = end.rsplit(":", 1)[0].strip("[]")
            host = host.removeprefix("::ffff:")
            if not (host.startswith("127.") or host == "::1"):
                bad.append(line)
    return bad


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


def answers(url: str) -> bool:
    """True once the server itself answers /ping with 200 (Ray's proxy answers 404 before the
    application is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- PostgreSQL ------------------------------------------------------------------------------


def pg_bindir() -> Path:
    """Debian's PostgreSQL server binaries (apt-get install postgresql)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL's initdb is not installed: apt-get install postgresql (.ci/run does)")


class Postgres:
    """A throw-away cluster in a folder of its own under the temp dir, removed when stopped.
    PostgreSQL refuses to run as root, so as root it runs as Debian's ``postgres`` user."""

    def __init__(self, password: str = "mlflow-test-pass"):
        import tempfile

        self.bindir = pg_bindir()
        self.folder = folder = Path(tempfile.mkdtemp(prefix="mnist-codec-pg-"))
        self.port, self.password = free_port(), password
        self.user = "postgres" if os.geteuid() == 0 else None
        data, sockets = folder / "data", folder / "sockets"
        sockets.mkdir()
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n")
        if self.user:
            ids = pwd.getpwnam(self.user)
            for p in (folder, sockets, pwfile):
                os.chown(p, ids.pw_uid, ids.pw_gid)
        init = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "mlflow",
                "-A",
                "scram-sha-256",
                "--pwfile",
                str(pwfile),
                "-E",
                "UTF8",
                "--no-sync",
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            user=self.user,
            timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        self.service = Service(
            "postgres",
            [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(sockets),
                "-c",
                "fsync=off",
            ],
            folder / "postgres.log",
            user=self.user,
            cwd=folder,
        )
        self.service.wait_until(
            lambda: (
                subprocess.run(
                    [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
                ).returncode
                == 0
            )
        )

    def create_database(self, name: str) -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        out = subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow", name],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {out.stderr}")
        return f"postgresql://mlflow:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.service.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the tracking server ---------------------------------------------------------------------


class TrackingServer:
    """``mnist-codec server`` on a free port; ``restart()`` brings it back on the same port
    with the same store."""

    def __init__(
        self,
        folder: Path,
        backend: str | None = None,
        auth: bool = False,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ):
        self.folder, self.backend, self.auth = folder, backend, auth
        self.port = port or free_port()
        self.env = dict(env or os.environ)
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.start()

    def start(self) -> None:
        cmd = [str(BIN / "mnist-codec"), "server", "--port", str(self.port), "--dir", str(self.folder)]
        if self.backend:
            cmd += ["--backend-store-uri", self.backend]
        if self.auth:
            cmd += ["--auth"]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.service = Service("mlflow server", cmd, self.folder / f"server-{self.starts}.log", env=self.env)
        self.service.wait_until(lambda: http_ok(f"{self.url}/health"), timeout=120)

    @property
    def pid(self) -> int:
        return self.service.pid

    def stop(self) -> None:
        self.service.stop()

    def restart(self, down_seconds: float = 0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


# --- S3 stand-in -----------------------------------------------------------------------------


class S3Server:
    """moto's S3-compatible server: a stand-in for S3 (state in memory, gone when stopped)."""

    KEY, SECRET = "testing-key", "testing-secret"

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.service = Service(
            "moto_server", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], folder / "moto.log"
        )
        self.service.wait_until(lambda: http_ok(f"{self.url}/moto-api/"), timeout=60)

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET, "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.SECRET,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        self.service.stop()
