"""``mnist-codec gate``, ``accept``, ``check-params`` and ``readme``: the committed results --
are they as good as the base, which regressions a person accepted, is params.yaml valid, and the
README's table of them."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GateError
from ..params import load


def add(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate",
        help="fail when results regress: the fresh run against HEAD's (reproduce), HEAD's against the base (regress)",
    )
    g.add_argument("--only", choices=["reproduce", "regress"], default=None, help="ask one question (default: both)")
    _judgement_args(g, "--baseline: the fresh detail file")
    g.add_argument("--baseline", default=None, help="compare two detail files instead, this one and --current")
    g.add_argument("--all", action="store_true", help="also list every check of every comparison")
    g.add_argument("--report", default=None, help="also write the comparison report, Markdown, to this file")
    g.add_argument("--title", default=None, help="the report's heading")
    g.set_defaults(func=_gate)
    a = sub.add_parser(
        "accept",
        help="record the regressions the gate sees now, with a reason, in metrics_accepted.yaml (commit it)",
    )
    a.add_argument("--reason", required=True, help="why these results may be worse: a reviewer reads it")
    _judgement_args(a)
    a.set_defaults(func=_accept)
    c = sub.add_parser("check-params", help="validate a params file")
    c.add_argument("params", nargs="?", default="params.yaml")
    c.set_defaults(func=_check_params)
    m = sub.add_parser("readme", help="write the README's headline table from reports/comparison.md")
    m.add_argument("--readme", default="README.md")
    m.add_argument("--comparison", default="reports/comparison.md")
    m.set_defaults(func=_readme)


def _judgement_args(parser: argparse.ArgumentParser, current_too: str = "") -> None:
    """What ``gate`` and ``accept`` judge: the results, against which base, by which rules, with
    which acceptances. ``current_too``: what else --current means to that command."""
    parser.add_argument(
        "--base",
        default=None,
        help="the results before the change: a commit, branch or DVC experiment (default: $GATE_BASE, else the "
        "merge-base with origin/main, else the results before HEAD's last change to them)",
    )
    parser.add_argument(
        "--current",
        default=None,
        help="this revision's committed results instead of HEAD's (a commit, branch or DVC experiment)"
        + (f"; with {current_too}" if current_too else ""),
    )
    parser.add_argument("--rules", default="metrics_gate.yaml", help="direction and tolerance per metric")
    parser.add_argument("--accepted", default=None, help="the accepted regressions (default: metrics_accepted.yaml)")


def _gate(args: argparse.Namespace) -> int:
    from ..evaluation import gate, gate_report

    rules = gate.load_rules(args.rules)
    if args.baseline is not None:  # two files, no git: the calibration's and a script's question
        if args.report or args.only or args.base:
            raise GateError("gate: --baseline compares two files; --report, --only and --base ask git's questions")
        baseline, current = (
            gate.read_metrics(args.baseline),
            gate.read_metrics(args.current or "reports/metrics_detail.json"),
        )
        checks = gate.compare(baseline, current, rules)
        print(gate_report.format_checks(checks, every=args.all))
        return 0 if all(c.ok for c in checks) else 1

    from ..evaluation import verdict as gate_verdict
    from ..workspace import workspace_root

    root = workspace_root()
    accepted = Path(args.accepted) if args.accepted else None
    v = gate_verdict.ask(root, rules, accepted, only=args.only, base=args.base, current=args.current)
    if args.all:
        for comparison in v.comparisons:
            if comparison.checks:
                print(f"gate --all: {comparison.question}")
                print(gate_report.format_checks(list(comparison.checks), every=True))
    print(gate_report.format_terminal(v))
    from ..machine import describe

    judged = v.current.rev.short if v.current.rev is not None else "workspace"
    report = gate_report.report_markdown(v, args.title or f"mnist-codec {judged}: the gate", describe())
    if args.report:
        from .. import fileio

        fileio.write_text(args.report, report)
    if args.current is None and v.current.rev is not None:  # HEAD's verdict, on HEAD's evaluate run
        from ..tracking import verdicts

        print(verdicts.log_verdict(root, v.current.rev.sha, v.current.digest, v.tags(verdicts.PREFIX), report))
    return 0 if v.passed else 1


def _accept(args: argparse.Namespace) -> int:
    from ..evaluation import gate, verdict
    from ..workspace import workspace_root

    root = workspace_root()
    accepted = verdict.accept(
        root,
        gate.load_rules(args.rules),
        Path(args.accepted) if args.accepted else None,
        args.reason,
        base=args.base,
        current=args.current,
    )
    print(accepted)
    return 0


def _check_params(args: argparse.Namespace) -> int:
    params = load(args.params)
    print(
        f"{args.params}: ok ({', '.join(params.activation)}; latent_dim {params.latent_dim}; "
        f"protocol {params.data.protocol})"
    )
    return 0


def _readme(args: argparse.Namespace) -> int:
    from .. import readme

    changed = readme.update(Path(args.readme), Path(args.comparison))
    print(f"readme: {args.readme} {'updated from' if changed else 'already shows'} {args.comparison}")
    return 0
