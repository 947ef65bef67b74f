import numpy as np
import pytest
import torch

from mnist_codec import evaluate, models


def test_psnr():
    assert evaluate.psnr(0.01) == pytest.approx(20.0)
    assert evaluate.psnr(1.0) == pytest.approx(0.0)


def test_per_digit_mse_averages_each_label():
    errors = np.array([1.0, 3.0, 5.0, 7.0])
    labels = np.array([0, 0, 9, 9], dtype=np.uint8)
    assert evaluate.per_digit_mse(errors, labels) == {"0": 2.0, "9": 6.0}


def test_codec_metrics(digits):
    x, y = digits
    model = models.build({"kind": "ae", "latent_dim": 8})
    metrics, codes = evaluate.codec_metrics(model, x, y)
    recon = model(torch.from_numpy(x)).detach().numpy()
    assert metrics["mse"] == pytest.approx(float(np.mean((recon.astype(np.float64) - x) ** 2)), rel=1e-6)
    assert metrics["psnr"] == pytest.approx(evaluate.psnr(metrics["mse"]))
    assert metrics["code_size"] == 8 and codes.shape == (400, 8)
    assert metrics["params"] == models.count_parameters(model)
    counts = np.bincount(y, minlength=10)
    weighted = sum(metrics["mse_digit"][str(d)] * counts[d] for d in range(10) if counts[d])
    assert weighted / len(y) == pytest.approx(metrics["mse"], rel=1e-9)


def test_project_2d_is_deterministic_and_centred(digits):
    x, _ = digits
    p = evaluate.project_2d(x[:, :50])
    assert p.shape == (400, 2)
    assert np.allclose(p.mean(axis=0), 0, atol=1e-4)
    assert np.array_equal(p, evaluate.project_2d(x[:, :50]))


def _metrics(mse):
    return {"mse": mse, "psnr": evaluate.psnr(mse), "code_size": 32, "params": 10}


def test_comparison_table_holdout_and_notebook():
    metrics = {"pca": _metrics(0.0172), "ae": _metrics(0.0110), "deep_leaky_relu": _metrics(0.0080)}
    rows = evaluate.comparison_rows(metrics, "holdout")
    assert [r["name"] for r in rows] == ["PCA", "AE (1 layer)", "Deep AE (LeakyReLU)"]
    assert "notebook_mse" not in rows[0]
    nb = evaluate.comparison_rows(metrics, "notebook")
    assert nb[0]["notebook_mse"] == 0.017181 and nb[0]["vs_notebook"] == "+0.1%"
    assert nb[2]["vs_notebook"] == f"{(0.0080 / 0.008534 - 1) * 100:+.1f}%"
    md = evaluate.rows_to_markdown(nb, "notebook", 70000)
    assert "| PCA | 32 | 10 | 0.017200 | 17.645 | 0.017181 | +0.1% |" in md
    csv_text = evaluate.rows_to_csv(nb)
    assert csv_text.splitlines()[0] == "codec,name,code_size,params,mse,psnr_db,notebook_mse,vs_notebook"
    assert len(csv_text.splitlines()) == 4


def test_scores_match_a_float64_reference_whatever_the_chunk(digits):
    x, _ = digits
    model = models.build({"kind": "deep", "latent_dim": 8, "hidden": [32, 16], "activation": "tanh"})
    with torch.no_grad():
        recon = model(torch.from_numpy(x)).numpy()
    reference = np.mean((recon.astype(np.float64) - x.astype(np.float64)) ** 2, axis=1)
    for chunk in (7, 100, 8192):
        codes, errors = evaluate.encode_and_score(model, x, chunk=chunk)
        assert codes.shape == (len(x), 8)
        np.testing.assert_allclose(errors, reference, rtol=1e-6)
