"""What a node needs to run a sweep's steps safely: a command that nothing of outlives the Ray
task running it (:func:`guarded`), and a clone folder of the git remote no other task on the node
is using (:func:`clone_slot`, under ``$MNIST_CODEC_CLUSTER_HOME``)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HOME_ENV = "MNIST_CODEC_CLUSTER_HOME"  # where a node keeps its clones (default ~/.cache/mnist-codec/cluster)
STEP_TIMEOUT = 6 * 3600.0  # seconds any one step (clone, pull, run, push) may take

_GUARD = r"""
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: we die with the worker
if os.getppid() != int(sys.argv[1]):  # it died before the line above took effect
    sys.exit(137)
alive_r, alive_w = os.pipe()
if os.fork() == 0:  # the watchdog: the worker's grandchild, out of reach of Ray's kill of its children
    os.close(alive_w)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)  # so that it holds none of the task's pipes open
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.read(alive_r, 1):
        pass
    os.killpg(0, signal.SIGKILL)  # the guard is gone, however it went: the whole group goes too
os.close(alive_r)
sys.exit(subprocess.call(sys.argv[2:]))
"""


def guarded(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = STEP_TIMEOUT
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new process group that nothing of it outlives.

    The group's leader, a small guard, dies with this process (Linux's parent-death signal).
    When the guard is gone, whether the worker's death took it or Ray killed it directly
    (a worker that exits kills its own child processes, not theirs), its watchdog child sees
    the guard's end of a pipe close and kills the group: the command and all it started."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _GUARD, str(os.getpid()), *cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # a timeout, or the task cancelled: nothing of the command may outlive it
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def cluster_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "mnist-codec" / "cluster")


@contextmanager
def clone_slot(git_remote: str, node_id: str, home: Path | None = None) -> Iterator[Path]:
    """A clone folder of ``git_remote`` on this node that no other task is using: the first of
    ``<home>/<remote>/<node>-<i>`` whose lock file this task can take."""
    base = (home or cluster_home()) / hashlib.sha256(git_remote.encode()).hexdigest()[:12]
    base.mkdir(parents=True, exist_ok=True)
    i = 0
    while True:
        lock_path = base / f"{node_id[:16]}-{i}.lock"
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                i += 1
                continue
            try:
                yield base / f"{node_id[:16]}-{i}"
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
            return
