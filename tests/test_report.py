import numpy as np
import pytest

from mnist_codec.errors import DataError
from mnist_codec.evaluation import metrics as scoring
from mnist_codec.evaluation import table as ctable
from mnist_codec.reporting import html as report


def _samples(codecs, n=6, m=40):
    rng = np.random.default_rng(0)
    s = {
        "originals": rng.random((n, 784), dtype=np.float32),
        "labels": np.arange(n, dtype=np.uint8),
        "proj_labels": (np.arange(m) % 10).astype(np.uint8),
        "pca_2d": rng.random((m, 2), dtype=np.float32),
    }
    for c in codecs:
        s[f"recon_{c}"] = rng.random((n, 784), dtype=np.float32)
        s[f"proj_{c}"] = rng.random((m, 2), dtype=np.float32)
    return s


def _per_seed(mse, n):
    return [
        {
            "mse": mse * (1 + 0.01 * r),
            "psnr": scoring.psnr(mse * (1 + 0.01 * r)),
            "code_size": 32,
            "stored_numbers": 5,
            "mse_digit": {str(d): mse * (1 + 0.01 * r) for d in range(10)},
        }
        for r in range(n)
    ]


def _curve(folder, seeds, epochs):
    folder.mkdir(parents=True)
    for r in range(seeds):
        rows = "".join(f"{e},{0.05 / e + 0.001 * r},{0.04 / e + 0.001 * r}\n" for e in range(1, epochs + 1))
        (folder / f"seed{r}.csv").write_text("epoch,train_loss,eval_loss\n" + rows)


def test_build_writes_figures_and_a_self_contained_page(tmp_path):
    codecs = ["pca", "ae", "deep_gelu"]
    metrics = {c: scoring.aggregate(_per_seed(0.01 * (i + 1), 1 if c == "pca" else 3)) for i, c in enumerate(codecs)}
    (tmp_path / "metrics.json").write_text(__import__("json").dumps(metrics))
    (tmp_path / "t.csv").write_text(ctable.to_csv(ctable.comparison_table(metrics, "holdout")))
    curves = tmp_path / "curves"
    _curve(curves / "ae", 3, 2)
    _curve(curves / "deep" / "deep_gelu", 3, 2)
    np.savez(tmp_path / "s.npz", **_samples(codecs))
    report.build(
        tmp_path / "metrics.json", tmp_path / "t.csv", curves, tmp_path / "s.npz", tmp_path / "fig", tmp_path / "r.html"
    )
    pngs = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert pngs == [
        "codes_2d.png",
        "mse_intervals.png",
        "pca_scatter.png",
        "per_digit_mse.png",
        "reconstructions.png",
        "training_curves.png",
    ]
    for p in (tmp_path / "fig").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    # the sweep's figure, made outside the pipeline, is shown last when given
    (tmp_path / "rd.png").write_bytes(b"\x89PNG\r\n\x1a\nsweep")
    report.build(
        tmp_path / "metrics.json",
        tmp_path / "t.csv",
        curves,
        tmp_path / "s.npz",
        tmp_path / "fig",
        tmp_path / "r.html",
        rate_distortion=tmp_path / "rd.png",
    )
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 7 and "Rate–distortion (make sweep)" in page
    assert "rate_distortion.png" not in {p.name for p in (tmp_path / "fig").iterdir()}
    with pytest.raises(DataError, match=r"rd-missing\.png: not found; `make sweep` makes it"):
        report.build(
            tmp_path / "metrics.json",
            tmp_path / "t.csv",
            curves,
            tmp_path / "s.npz",
            tmp_path / "fig",
            tmp_path / "r.html",
            rate_distortion=tmp_path / "rd-missing.png",
        )
    page = (tmp_path / "r.html").read_text()
    assert "<td>Deep AE (GELU)</td>" in page
    assert "95% confidence interval" in page and "<td>1 (deterministic)</td>" in page
    assert "<td>0.020200 ± " in page  # mean ± half-width of the AE's interval


def test_read_curves_stacks_seeds_per_codec_one_layer_ae_first(tmp_path):
    _curve(tmp_path / "deep" / "deep_relu", 3, 4)
    _curve(tmp_path / "ae", 3, 4)
    curves = report.read_curves(tmp_path)
    assert list(curves) == ["AE (1 layer)", "Deep AE (ReLU)"]
    assert curves["AE (1 layer)"]["eval_loss"].shape == (3, 4)
    assert curves["AE (1 layer)"]["eval_loss"][2, 0] == 0.042
    assert list(curves["Deep AE (ReLU)"]["epoch"]) == [1, 2, 3, 4]


def test_read_curves_refuses_seeds_of_different_lengths(tmp_path):
    import pytest

    from mnist_codec.errors import DataError

    _curve(tmp_path / "ae", 2, 3)
    (tmp_path / "ae" / "seed1.csv").write_text("epoch,train_loss,eval_loss\n1,0.2,0.1\n")
    with pytest.raises(DataError, match="different numbers of epochs"):
        report.read_curves(tmp_path)
