"""The tables of benchmarks/GATE.md (docs/gate.md includes them), from the record
benchmarks/gate_calibration.py writes: each condition's change of every codec's MSE and the gate's
verdict, then what the perturbations measured against the tolerance metrics_gate.yaml gives."""

from __future__ import annotations

CODECS = ["ae", "deep_relu", "deep_tanh", "deep_leaky_relu"]


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def markdown(record: dict) -> str:
    from mnist_codec.evaluation.table import display_name

    lines = [
        "<!-- written by benchmarks/gate_calibration.py: do not edit by hand -->",
        (
            f"Measured on {record['machine']}, the default profile ({record['profile']}), "
            f"{record['date']}; the baseline is `make repro` on the same machine. Each cell is the change of "
            "the codec's mean MSE against the baseline (each seed against its own); *worst seed*, the largest "
            "change of one seed."
        ),
        "",
        "| Condition | Kind | What | " + " | ".join(display_name(c) for c in CODECS) + " | Worst seed | Gate |",
        "|---|---|---|" + "---:|" * len(CODECS) + "---:|---|",
    ]
    for name, r in record["conditions"].items():
        ch = r["changes"]
        cells = [_pct(ch[c]["mse"]["mean"]) if c in ch else "-" for c in CODECS]
        worst = max((x for c in ch.values() for x in c["mse"]["per_seed"]), key=abs, default=float("nan"))
        verdict = "pass" if not r["failed"] else "**fail**: " + ", ".join(f"`{m}`" for m in r["failed"][:3])
        verdict += f" +{len(r['failed']) - 3} more" if len(r["failed"]) > 3 else ""
        lines.append(f"| `{name}` | {r['kind']} | {r['what']} | {' | '.join(cells)} | {_pct(worst)} | {verdict} |")
    lines += [
        "",
        "What the perturbations measured, per codec, and the paired tolerance `metrics_gate.yaml` gives it:",
        "",
        (
            "| Codec | Seeds' changes | RMS a seed | Largest seed | Largest mean | Largest digit | Tolerance "
            "| False alarms | Caught elsewhere from |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for codec, s in record["noise"].items():
        far = f"{s['false_alarm']:.0e}" if s["false_alarm"] > 0 else "0"
        lines.append(
            f"| {display_name(codec)} | {s['seed_changes']} | {s['sigma'] * 100:.2f}% | {s['max_abs_seed'] * 100:.2f}% "
            f"| {s['max_abs_mean'] * 100:.2f}% | {s['max_abs_digit'] * 100:.2f}% | {s['tolerance'] * 100:.2f}% "
            f"| {far} | {s['smallest_caught_elsewhere'] * 100:.2f}% |"
        )
    lines += [
        "",
        (
            "*False alarms*: the chance that an unchanged codec's mean over "
            f"{max((s['n_seeds'] for s in record['noise'].values()), default=3)} seeds moves past the tolerance, "
            "were each seed's change normal with the RMS above and independent (0 where nothing moved). "
            "*Caught elsewhere from*: the smallest regression still caught when the float paths also move the "
            "codec by the largest improvement measured above; on the baseline's own machine every regression "
            "beyond the tolerance fails."
        ),
    ]
    return "\n".join(lines) + "\n"
