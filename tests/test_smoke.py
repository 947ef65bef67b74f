"""The smoke run (tests/smoke.py): the whole pipeline in-process, every output in place."""

from __future__ import annotations

import json

import yaml

from conftest import REPO
from smoke import CODECS


def test_every_output_dvc_yaml_declares_is_written(smoke):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = [
        next(iter(o)) if isinstance(o, dict) else o
        for stage in stages.values()
        for o in stage.get("outs", []) + stage.get("metrics", [])
    ]
    missing = [path for path in declared if not (smoke / path).exists()]
    assert declared and not missing, missing


def test_the_evaluation_compares_every_codec_with_intervals_over_its_seeds(smoke):
    metrics = json.loads((smoke / "reports/metrics.json").read_text())
    assert sorted(metrics) == sorted(CODECS)
    for codec, m in metrics.items():
        n = 1 if codec == "pca" else 2
        assert m["mse"]["n"] == n and len(m["mse"]["per_seed"]) == n
        assert m["mse"]["ci95_low"] <= m["mse"]["mean"] <= m["mse"]["ci95_high"]
        assert 0 < m["mse"]["mean"] < 1 and m["code_size"] == 32  # pixels in [0, 1]
    assert metrics["pca"]["mse"]["mean"] < 0.05  # 32 components of real digits
    table = (smoke / "reports/comparison.md").read_text()
    assert all(name in table for name in ("PCA", "AE (1 layer)", "Deep AE (ReLU)"))


def test_the_report_is_one_self_contained_page_with_every_figure(smoke):
    page = (smoke / "reports/report.html").read_text()
    figures = sorted(p.name for p in (smoke / "reports/figures").iterdir())
    assert len(figures) == 6 and page.count("data:image/png;base64,") == len(figures)
    assert "<script src=" not in page and "http://" not in page.replace("http://www.w3.org", "")
