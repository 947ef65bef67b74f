"""The serving benchmark's section of RESULTS.md: the cases, the batching settings tried, the
soak, and the targets each figure is held against."""

from __future__ import annotations

BATCH_USERS = 8  # the users of the 256-image cases (bench/serve.py)
# The targets, on 2 cores.
NPY_IMAGES_PER_S = 20_000
SINGLE_RPS, SINGLE_P99_MS = 1000, 50.0
SOAK_MEMORY_GROWTH = 0.10


def _fmt(v: float, unit: str = "") -> str:
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}"


NAMES = {"ray": "Ray Serve", "mlflow": "MLflow"}
CASE_LABELS = {"single": "1 image, JSON", "batch-json": "256 images, JSON", "batch-npy": "256 images, npy"}


def markdown(result: dict, head: list[str]) -> str:
    """The section of benchmarks/RESULTS.md: the cases, both servers side by side, and the targets."""
    st = result["settings"]
    lines = [
        *head,
        (
            f"- **Model:** `{result['model']}` ({result['codec']}). **Ray Serve:** {result['replicas']} replicas, "
            f"`@serve.batch` up to {st['max_batch_size']} requests, {st['batch_wait_timeout_s'] * 1000:g} ms wait "
            f"(serve.yaml). **MLflow:** `mlflow models serve --env-manager local`, 1 worker (`make serve-model`)."
        ),
        (
            f"- **Load:** Locust on the same machine, headless, {result['case_s']:.0f} s a case (and at most 200,000 "
            "requests); every answer checked against the in-process model's during the load."
        ),
        "",
        "| Case | Server | requests/s | images/s | p50 | p99 | errors | wrong |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, by in result["cases"].items():
        case, users = key.split("@")
        label = f"{CASE_LABELS[case]}, {users} user{'s' if users != '1' else ''}"
        for name in ("ray", "mlflow"):
            r = by[name]
            if "refused" in r:
                lines.append(f"| {label} | {NAMES[name]} | not taken: {r['refused'][:48]}… | | | | | |")
                continue
            lines.append(
                f"| {label} | {NAMES[name]} | {_fmt(r['rps'])} | {_fmt(r['images_per_s'])} | {r['p50_ms']:.1f} ms "
                f"| {r['p99_ms']:.1f} ms | {r['failures'] - r['wrong']} | {r['wrong']} |"
            )
    own, h = result["in_process"], result["handle"]
    lines += [
        "",
        (
            f"The model in-process, one call at a time: 1 image {own['1']['p50_ms']:.2f} ms p50 "
            f"({_fmt(own['1']['images_per_s'])} images/s); 256 images {own['256']['p50_ms']:.2f} ms p50 "
            f"({_fmt(own['256']['images_per_s'])} images/s). Ray Serve's request path without HTTP (a "
            f"DeploymentHandle, 32 concurrent callers, 1 image each): {_fmt(h['rps'])} requests/s, "
            f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms."
        ),
        "",
        (
            f"Soak: both servers at once, {result['soak_rps']:g} single-image requests/s each for "
            f"{result['soak_s']:.0f} s (8 users); memory is the resident size of each server's processes, "
            "the last minute's mean against the mean of the minute after a minute's warm-up."
        ),
        "",
        "| Server | requests | errors | wrong | p50 | p99 | memory, early | memory, last | growth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("ray", "mlflow"):
        r = result["soak"][name]
        lines.append(
            f"| {NAMES[name]} | {r['requests']:,} | {r['failures'] - r['wrong']} | {r['wrong']} | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['memory_early_mib']:,.0f} MiB | "
            f"{r['memory_late_mib']:,.0f} MiB | {r['memory_growth'] * 100:+.1f}% |"
        )
    lines += ["", *grid_lines(result), *targets(result), ""]
    return "\n".join(lines)


def grid_lines(result: dict) -> list[str]:
    """How serve.yaml's batching was chosen: Ray Serve alone under each setting tried."""
    if not result.get("batch_grid"):
        return []
    lines = [
        (
            f"Batching settings tried (Ray Serve alone, {result['case_s'] / 2:.0f} s a case; the row in bold "
            "is serve.yaml's):"
        ),
        "",
        "| max_batch_size | wait | 1 image, 32 users: requests/s | p99 | 256 images npy, 8 users: images/s | p99 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    st = result["settings"]
    for row in result["batch_grid"]:
        chosen = (row["max_batch_size"], row["batch_wait_timeout_s"]) == (
            st["max_batch_size"],
            st["batch_wait_timeout_s"],
        )
        b = "**" if chosen else ""
        lines.append(
            f"| {b}{row['max_batch_size']}{b} | {b}{row['batch_wait_timeout_s'] * 1000:g} ms{b} | "
            f"{_fmt(row['single']['rps'])} | {row['single']['p99_ms']:.1f} ms | {_fmt(row['npy']['images_per_s'])} | "
            f"{row['npy']['p99_ms']:.1f} ms |"
        )
    return [*lines, ""]


def targets(result: dict) -> list[str]:
    """The targets for Ray Serve, each met or not, with MLflow's figure beside it."""
    npy = result["cases"][f"batch-npy@{BATCH_USERS}"]["ray"]
    json_mlflow = result["cases"][f"batch-json@{BATCH_USERS}"]["mlflow"]
    one, one_mlflow = result["cases"]["single@32"]["ray"], result["cases"]["single@32"]["mlflow"]
    soak_r, soak_m = result["soak"]["ray"], result["soak"]["mlflow"]
    long_enough = result["soak_s"] >= 600  # Locust's clock ends at the last answer, a moment before

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        "Targets (Ray Serve; MLflow's server beside it):",
        "",
        (
            f"- npy batches ≥ {NPY_IMAGES_PER_S:,} images/s: {_fmt(npy['images_per_s'])} "
            f"({met(npy['images_per_s'] >= NPY_IMAGES_PER_S)}); MLflow, 256 images as JSON: "
            f"{_fmt(json_mlflow['images_per_s'])}."
        ),
        (
            f"- single images at 32 users ≥ {SINGLE_RPS:,} requests/s with p99 ≤ {SINGLE_P99_MS:.0f} ms: "
            f"{_fmt(one['rps'])} requests/s, p99 {one['p99_ms']:.1f} ms "
            f"({met(one['rps'] >= SINGLE_RPS and one['p99_ms'] <= SINGLE_P99_MS)}); MLflow: "
            f"{_fmt(one_mlflow['rps'])} requests/s, p99 {one_mlflow['p99_ms']:.1f} ms."
        ),
        (
            f"- no errors in the soak: {soak_r['failures']} failed "
            f"({met(soak_r['failures'] == 0 and long_enough)}{'' if long_enough else ': shorter than 10 minutes'}); "
            f"MLflow: {soak_m['failures']}."
        ),
        (
            f"- memory growth in the soak ≤ {SOAK_MEMORY_GROWTH * 100:.0f}%: {soak_r['memory_growth'] * 100:+.1f}% "
            f"({met(soak_r['memory_growth'] <= SOAK_MEMORY_GROWTH)}); MLflow: {soak_m['memory_growth'] * 100:+.1f}%."
        ),
    ]
