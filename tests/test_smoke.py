"""The smoke run (tests/smoke.py): the whole pipeline in-process, every output in place."""

from __future__ import annotations

import json

import pytest
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
    metrics = json.loads((smoke / "reports/metrics_detail.json").read_text())
    assert sorted(metrics) == sorted(CODECS)
    headline = json.loads((smoke / "reports/metrics.json").read_text())  # what dvc exp show lists
    assert {c: sorted(h) for c, h in headline.items()} == {c: ["mse", "mse_ci95", "n_seeds", "psnr"] for c in CODECS}
    for codec, h in headline.items():
        m = metrics[codec]
        assert h["mse"] == m["mse"]["mean"] and h["psnr"] == m["psnr"]["mean"] and h["n_seeds"] == m["mse"]["n"]
        assert h["mse_ci95"] == pytest.approx((m["mse"]["ci95_high"] - m["mse"]["ci95_low"]) / 2)
        folder = smoke / "models" / ("ae" if codec == "ae" else f"deep/{codec}")
        records = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*.json"))] if codec != "pca" else []
        assert m["seeds"] == [r["seed"] for r in records]  # each seed's value with its seed (PCA: none)
        assert m["settings"]["train"] == (None if codec == "pca" else records[0]["made_of"]["train"])
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
