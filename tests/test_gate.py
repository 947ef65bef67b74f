import json

import pytest

from mnist_codec import cli, gate
from mnist_codec.errors import GateError

from conftest import REPO

RULES = [gate.Rule("*.mse", "lower", rel_tol=0.05), gate.Rule("*.psnr", "higher", abs_tol=0.2),
         gate.Rule("*.code_size", "equal")]
BASE = {"ae": {"mse": 0.010, "psnr": 20.0, "code_size": 32}}


def _current(**ae):
    return {"ae": {**BASE["ae"], **ae}}


def test_within_tolerance_passes_and_improvement_passes():
    assert all(c.ok for c in gate.compare(BASE, _current(mse=0.0104, psnr=19.85), RULES))
    assert all(c.ok for c in gate.compare(BASE, _current(mse=0.001, psnr=30.0), RULES))


@pytest.mark.parametrize("change, metric", [({"mse": 0.0106}, "ae.mse"), ({"psnr": 19.7}, "ae.psnr"),
                                            ({"code_size": 16}, "ae.code_size")])
def test_regression_beyond_tolerance_fails(change, metric):
    failed = [c.metric for c in gate.compare(BASE, _current(**change), RULES) if not c.ok]
    assert failed == [metric]


def test_missing_metric_fails_and_unruled_metric_is_an_error():
    cur = {"ae": {"psnr": 20.0, "code_size": 32}}
    (check,) = [c for c in gate.compare(BASE, cur, RULES) if not c.ok]
    assert check.metric == "ae.mse" and check.why == "missing"
    with pytest.raises(GateError, match="no rule matches metric 'ae.params'"):
        gate.compare({"ae": {"params": 3}}, {"ae": {"params": 3}}, RULES)


def test_cli_exit_codes(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: '*.mse', direction: lower, rel_tol: 0.05}\n")
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    base.write_text(json.dumps({"pca": {"mse": 0.0172}}))
    cur.write_text(json.dumps({"pca": {"mse": 0.0172}}))
    assert cli.main(["gate", "--baseline", str(base), "--current", str(cur), "--rules", str(rules)]) == 0
    cur.write_text(json.dumps({"pca": {"mse": 0.0190}}))
    assert cli.main(["gate", "--baseline", str(base), "--current", str(cur), "--rules", str(rules)]) == 1
    assert "gate: 0 passed, 1 failed" in capsys.readouterr().out
    rules.write_text("rules:\n  - {metric: '*.mse', direction: sideways}\n")
    assert cli.main(["gate", "--baseline", str(base), "--current", str(cur), "--rules", str(rules)]) == 2


def test_committed_baseline_is_fully_covered_by_committed_rules():
    baseline = json.loads((REPO / "reports" / "metrics.json").read_text())
    checks = gate.compare(baseline, baseline, gate.load_rules(REPO / "metrics_gate.yaml"))
    assert checks and all(c.ok for c in checks)
    assert {c.metric.split(".")[0] for c in checks} >= {"pca", "ae", "deep_relu", "deep_tanh", "deep_leaky_relu"}


def test_committed_baseline_made_stricter_makes_the_gate_fail():
    # What CI sees when someone improves the committed baseline beyond what the code delivers.
    baseline = json.loads((REPO / "reports" / "metrics.json").read_text())
    stricter = json.loads(json.dumps(baseline))
    stricter["deep_leaky_relu"]["mse"] *= 0.8
    checks = gate.compare(stricter, baseline, gate.load_rules(REPO / "metrics_gate.yaml"))
    assert [c.metric for c in checks if not c.ok] == ["deep_leaky_relu.mse"]
