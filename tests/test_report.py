import numpy as np

from mnist_codec import evaluate, report


def _samples(codecs, n=6, m=40):
    rng = np.random.default_rng(0)
    s = {"originals": rng.random((n, 784), dtype=np.float32), "labels": np.arange(n, dtype=np.uint8),
         "proj_labels": (np.arange(m) % 10).astype(np.uint8), "pca_2d": rng.random((m, 2), dtype=np.float32)}
    for c in codecs:
        s[f"recon_{c}"] = rng.random((n, 784), dtype=np.float32)
        s[f"proj_{c}"] = rng.random((m, 2), dtype=np.float32)
    return s


def test_build_writes_figures_and_a_self_contained_page(tmp_path):
    codecs = ["pca", "ae", "deep_gelu"]
    metrics = {c: {"mse": 0.01 * (i + 1), "psnr": evaluate.psnr(0.01 * (i + 1)), "code_size": 32, "params": 5,
                   "mse_digit": {str(d): 0.01 for d in range(10)}} for i, c in enumerate(codecs)}
    (tmp_path / "metrics.json").write_text(__import__("json").dumps(metrics))
    (tmp_path / "t.csv").write_text(evaluate.rows_to_csv(evaluate.comparison_rows(metrics, "holdout")))
    curves = tmp_path / "curves"
    (curves / "deep").mkdir(parents=True)
    (curves / "ae.csv").write_text("epoch,train_loss,eval_loss\n1,0.05,0.04\n2,0.03,0.02\n")
    (curves / "deep" / "deep_gelu.csv").write_text("epoch,train_loss,eval_loss\n1,0.06,0.05\n")
    np.savez(tmp_path / "s.npz", **_samples(codecs))
    report.build(tmp_path / "metrics.json", tmp_path / "t.csv", curves, tmp_path / "s.npz",
                 tmp_path / "fig", tmp_path / "r.html")
    pngs = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert pngs == ["codes_2d.png", "pca_scatter.png", "per_digit_mse.png", "reconstructions.png",
                    "training_curves.png"]
    for p in (tmp_path / "fig").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "<td>Deep AE (GELU)</td>" in page


def test_read_curves_lists_the_one_layer_ae_first(tmp_path):
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "deep_relu.csv").write_text("epoch,train_loss,eval_loss\n1,0.2,0.1\n")
    (tmp_path / "ae.csv").write_text("epoch,train_loss,eval_loss\n1,0.3,0.2\n")
    curves = report.read_curves(tmp_path)
    assert list(curves) == ["AE (1 layer)", "Deep AE (ReLU)"]
    assert curves["AE (1 layer)"]["eval_loss"] == [0.2]
