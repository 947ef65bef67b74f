import numpy as np
import pytest
import torch

from mnist_codec.codecs import models
from mnist_codec.evaluation import metrics as scoring
from mnist_codec.evaluation import table as ctable


def test_psnr():
    assert scoring.psnr(0.01) == pytest.approx(20.0)
    assert scoring.psnr(1.0) == pytest.approx(0.0)


def test_per_digit_mse_averages_each_label():
    errors = np.array([1.0, 3.0, 5.0, 7.0])
    labels = np.array([0, 0, 9, 9], dtype=np.uint8)
    assert scoring.per_digit_mse(errors, labels) == {"0": 2.0, "9": 6.0}


def test_codec_metrics(digits):
    x, y = digits
    model = models.build({"kind": "ae", "latent_dim": 8})
    metrics, codes = scoring.codec_metrics(model, x, y)
    recon = model(torch.from_numpy(x)).detach().numpy()
    assert metrics["mse"] == pytest.approx(float(np.mean((recon.astype(np.float64) - x) ** 2)), rel=1e-6)
    assert metrics["psnr"] == pytest.approx(scoring.psnr(metrics["mse"]))
    assert metrics["code_size"] == 8 and codes.shape == (400, 8)
    assert metrics["stored_numbers"] == models.count_parameters(model)
    counts = np.bincount(y, minlength=10)
    weighted = sum(metrics["mse_digit"][str(d)] * counts[d] for d in range(10) if counts[d])
    assert weighted / len(y) == pytest.approx(metrics["mse"], rel=1e-9)


def test_project_2d_is_deterministic_and_centred(digits):
    x, _ = digits
    p = scoring.project_2d(x[:, :50])
    assert p.shape == (400, 2)
    assert np.allclose(p.mean(axis=0), 0, atol=1e-4)
    assert np.array_equal(p, scoring.project_2d(x[:, :50]))


def _codec(values):
    from mnist_codec.evaluation.stats import summarize

    return {
        "mse": summarize(values),
        "psnr": summarize([scoring.psnr(v) for v in values]),
        "code_size": 32,
        "stored_numbers": 10,
    }


def test_comparison_table_gives_intervals_and_does_not_rank_overlapping_codecs():
    metrics = {
        "pca": _codec([0.0172]),
        "ae": _codec([0.0110, 0.0112, 0.0111]),
        "deep_relu": _codec([0.0090, 0.0100, 0.0095]),
        "deep_leaky_relu": _codec([0.0092, 0.0096, 0.0094]),
    }
    frame = ctable.comparison_table(metrics, "holdout")
    rows = frame.to_dict("records")
    assert [r["name"] for r in rows] == ["PCA", "AE (1 layer)", "Deep AE (ReLU)", "Deep AE (LeakyReLU)"]
    assert "notebook_mse" not in rows[0]
    by = {r["codec"]: r for r in rows}
    assert by["deep_relu"]["rank"] == by["deep_leaky_relu"]["rank"] == 1  # overlapping: not ordered
    assert by["deep_relu"]["not_separated_from"] == "deep_leaky_relu"
    assert by["ae"]["rank"] == 3 and by["pca"]["rank"] == 4 and by["pca"]["not_separated_from"] == ""
    assert by["ae"]["mse_ci95_low"] < 0.0111 < by["ae"]["mse_ci95_high"]
    md = ctable.to_markdown(frame, "holdout", 10000)
    assert "| Deep AE (ReLU) | 32 | 10 | 3 | 0.009500 ± 0.001242 |" in md
    assert "1 (not separated from Deep AE (LeakyReLU))" in md
    assert "| PCA | 32 | 10 | 1 (deterministic) | 0.017200 |" in md
    csv_text = ctable.to_csv(frame)
    assert csv_text.splitlines()[0].startswith("codec,name,code_size,stored_numbers,n_seeds,mse_mean,mse_ci95_low")


def test_notebook_table_compares_the_published_figure_with_the_interval():
    metrics = {
        "pca": _codec([0.017180]),
        "deep_leaky_relu": _codec([0.0083, 0.0098, 0.0090]),
        "deep_relu": _codec([0.0110, 0.0111, 0.0109]),
    }
    frame = ctable.comparison_table(metrics, "notebook")
    rows = frame.to_dict("records")
    by = {r["codec"]: r for r in rows}
    assert by["deep_leaky_relu"]["vs_notebook"].startswith("within our interval")  # 0.008534 inside
    assert by["deep_relu"]["vs_notebook"].startswith("ours lower")  # 0.012785 above our interval
    assert by["pca"]["vs_notebook"] == "deterministic (-0.0%)"  # no interval: the difference itself
    md = ctable.to_markdown(frame, "notebook", 70000)
    assert "Notebook vs ours" in md and "0.008534" in md


def test_scores_match_a_float64_reference_whatever_the_chunk(digits):
    x, _ = digits
    model = models.build({"kind": "deep", "latent_dim": 8, "hidden": [32, 16], "activation": "tanh"})
    with torch.no_grad():
        recon = model(torch.from_numpy(x)).numpy()
    reference = np.mean((recon.astype(np.float64) - x.astype(np.float64)) ** 2, axis=1)
    for chunk in (7, 100, 8192):
        codes, errors = scoring.encode_and_score(model, x, chunk=chunk)
        assert codes.shape == (len(x), 8)
        np.testing.assert_allclose(errors, reference, rtol=1e-6)
