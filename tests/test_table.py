"""The comparison table: ranks by separated intervals, the notebook's figure against ours, and
the Markdown and CSV the evaluate stage writes (reports/comparison.md, .csv) and the report reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_codec.evaluation import table
from mnist_codec.evaluation.stats import summarize


def codec(values, psnr, stored=50992):
    return {"mse": summarize(values), "psnr": summarize(psnr), "code_size": 32, "stored_numbers": stored}


METRICS = {
    "pca": codec([0.017181], [17.65], stored=25120),
    "ae": codec([0.0139, 0.0140, 0.0138], [18.57, 18.55, 18.60]),
    "deep_relu": codec([0.0090, 0.0100, 0.0095], [20.5, 20.0, 20.2]),
    "deep_gelu": codec([0.0092, 0.0096, 0.0094], [20.3, 20.1, 20.2]),
    "conv_silu": codec([0.0070, 0.0071], [21.5, 21.4]),
    "mystery": codec([0.02, 0.021], [17.0, 16.9]),
}

EXPECTED = Path(__file__).parent / "expected"


def test_the_notebook_table_as_written():
    """The whole file a reader opens (a change to it is a reviewed diff): every codec's interval,
    its rank among the separated ones, and where the notebook's published figure falls."""
    text = table.to_markdown(table.comparison_table(METRICS, "notebook"), "notebook", 70000)
    assert text == (EXPECTED / "comparison_notebook.md").read_text(encoding="utf-8")


def test_the_csv_reads_back_into_the_same_cells():
    frame = table.comparison_table(METRICS, "holdout")
    assert "notebook_mse" not in frame.columns
    rows = frame.to_dict("records")
    assert [r["rank"] for r in rows] == [5, 4, 2, 2, 1, 4]
    assert [r["not_separated_from"] for r in rows] == ["mystery", "mystery", "deep_gelu", "deep_relu", "", "pca;ae"]

    import io

    text = table.to_csv(frame)
    assert text.splitlines()[0] == (
        "codec,name,code_size,stored_numbers,n_seeds,mse_mean,mse_ci95_low,mse_ci95_high,mse_std,psnr_mean,"
        "psnr_ci95_low,psnr_ci95_high,rank,not_separated_from"
    )  # no index column
    assert "\r" not in text and text.endswith("pca;ae\n")
    back = table.read_csv(io.StringIO(text)).to_dict("records")
    assert all(isinstance(v, str) for r in back for v in r.values())
    assert [table.display_cells(r) for r in back] == [table.display_cells(r) for r in rows]
    assert back[4]["not_separated_from"] == "" and back[0]["mse_std"] == "0.0"


def test_the_holdout_and_validation_tables_say_what_they_were_evaluated_on():
    frame = table.comparison_table(METRICS, "holdout")
    assert "Evaluated on 10,000 images: the held-out test images, trained on the training images" in table.to_markdown(
        frame, "holdout", 10000
    )
    assert "the test images are not used (validation protocol)" in table.to_markdown(frame, "validation", 10000)
    assert "Evaluated on 5 images: protocol other." in table.to_markdown(frame, "other", 5)


@pytest.mark.parametrize(
    ("ref", "verdict"),
    [
        (0.0105, "within our interval (+0.0%)"),
        (0.0100, "within our interval (+5.0%)"),  # the interval's ends are inside it
        (0.0110, "within our interval (-4.5%)"),
        (0.0111, "ours lower (-5.4%)"),
        (0.0099, "ours higher (+6.1%)"),
    ],
)
def test_the_notebooks_figure_against_our_interval(ref, verdict):
    mse = {"mean": 0.0105, "n": 3, "ci95_low": 0.0100, "ci95_high": 0.0110}
    assert table.notebook_verdict(mse, ref) == verdict
    assert table.notebook_verdict({**mse, "n": 1}, ref).startswith("deterministic (")


def test_display_names():
    assert [table.display_name(c) for c in ("pca", "ae", "deep_leaky_relu", "conv_elu", "deep_swish")] == [
        "PCA",
        "AE (1 layer)",
        "Deep AE (LeakyReLU)",
        "Conv AE (ELU)",
        "Deep AE (swish)",  # an activation without a display name keeps its own
    ]
    assert table.display_name("deep") == "deep" and table.display_name("other_relu") == "other_relu"


def test_cells_of_a_row():
    row = table.comparison_table({"deep_tanh": codec([0.0110], [19.0])}, "holdout").to_dict("records")[0]
    cells = table.display_cells(row, {"deep_tanh": "x"})
    assert cells == {
        "name": "Deep AE (Tanh)",
        "code_size": "32",
        "stored_numbers": "50,992",
        "n_seeds": "1",  # one seed of a stochastic codec is not deterministic
        "mse": "0.011000",
        "psnr": "19.00",
        "rank": "1",
    }
    tied = {**row, "not_separated_from": "pca;ae"}
    assert table.display_cells(tied, {"pca": "PCA-32"})["rank"] == "1 (not separated from PCA-32, AE (1 layer))"


def test_a_table_of_one_codec():
    frame = table.comparison_table({"deep_tanh": codec([0.0110, 0.0112], [19.0, 19.1])}, "holdout")
    text = table.to_markdown(frame, "holdout", 10)
    assert text.startswith("# Reconstruction of MNIST digits through a 32-number code\n")
    assert "Each autoencoder is trained on 2 seeds" in text and text.count("| Deep AE (Tanh) |") == 1
