"""The promotion rule: who takes the champion alias, and why."""

from __future__ import annotations

import pytest

from mnist_codec.evaluation.promotion import Standing, decide, ineligible, median_seed

SHA = "a" * 64


def standing(version="2", codec="deep_leaky_relu", mean=0.0094, half=0.0010, n=3, sha=SHA):
    return Standing(version, codec, mean, mean - half, mean + half, n, sha)


def test_the_first_evaluated_codec_becomes_champion():
    d = decide(standing(), None)
    assert d.promote and d.reason.startswith("no champion yet")


def test_an_alias_on_a_version_never_evaluated_is_replaced():
    d = decide(standing(), None, champion_version="7")
    assert d.promote and "champion v7 has no evaluation" in d.reason


def test_a_candidate_wholly_below_the_champion_takes_the_alias():
    d = decide(standing("5", mean=0.0080, half=0.0003), standing("2", mean=0.0094, half=0.0010))
    assert d.promote and "lies wholly below champion v2" in d.reason


@pytest.mark.parametrize(
    ("mean", "half"),
    [
        (0.0090, 0.0003),  # lower mean, but the intervals overlap: within noise
        (0.0094, 0.0001),  # level
        (0.0120, 0.0003),  # worse (one epoch instead of ten)
    ],
)
def test_a_candidate_not_separated_from_the_champion_does_not(mean, half):
    d = decide(standing("5", mean=mean, half=half), standing("2"))
    assert d.promote is False and "not better by more than noise" in d.reason


def test_deterministic_pca_has_an_exact_interval():
    champion = standing("1", codec="pca", mean=0.0168, half=0.0, n=1)
    assert decide(standing("4", mean=0.0114, half=0.0003), champion).promote
    assert decide(standing("4", mean=0.0170, half=0.0003), champion).promote is False
    # and PCA itself can challenge: its point lies below a worse codec's whole interval
    assert decide(standing("1", codec="pca", mean=0.0100, half=0.0, n=1), standing("3", mean=0.0120)).promote


def test_one_seed_of_a_stochastic_codec_never_replaces_a_champion():
    d = decide(standing("9", mean=0.0010, half=0.0, n=1), standing("2"))
    assert d.promote is False and "one seed gives no interval" in d.reason
    assert decide(standing("9", mean=0.0010, half=0.0, n=1), None).promote  # but fills an empty alias


def test_other_evaluation_data_is_not_compared():
    d = decide(standing("5", mean=0.0010, half=0.0001, sha="b" * 64), standing("2"))
    assert d.promote is False and "evaluated on other data" in d.reason


def test_the_champion_again_is_kept_as_is():
    d = decide(standing("2"), standing("2"))
    assert d.promote is False and "already the champion" in d.reason


def test_only_the_default_protocol_and_code_size_compete():
    assert ineligible("holdout", 32) is None
    assert "protocol 'notebook'" in ineligible("notebook", 32)
    assert "latent_dim 16" in ineligible("holdout", 16)


def test_standing_round_trips_through_version_tags():
    s = standing()
    assert Standing.from_tags("2", {**s.tags(), "mnist_codec.codec": s.codec}) == s
    assert Standing.from_tags("2", {"mnist_codec.codec": "ae"}) is None


def test_the_representative_seed_is_the_median():
    assert median_seed([0.3, 0.1, 0.2]) == 2
    assert median_seed([0.2, 0.1]) == 1
    assert median_seed([0.5]) == 0


def test_the_champions_question_is_the_default_params():
    """promotion.py states the protocol and code size itself (no stage re-runs for an edit of
    params.py); they stay the defaults of params.yaml's schema and of the committed file."""
    import yaml

    from mnist_codec.evaluation import promotion
    from mnist_codec.params import Params

    from conftest import REPO

    defaults = Params().to_dict()
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert promotion.CHAMPION_PROTOCOL == defaults["data"]["protocol"] == committed["data"]["protocol"]
    assert promotion.CHAMPION_LATENT_DIM == defaults["latent_dim"] == committed["latent_dim"]


def test_the_candidate_is_the_lowest_mean_and_the_first_listed_on_a_tie():
    from mnist_codec.evaluation.promotion import lowest_mean

    assert lowest_mean({"ae": 0.014, "deep_relu": 0.012, "pca": 0.017}) == "deep_relu"
    assert lowest_mean({"b": 0.01, "a": 0.01}) == "b"


def test_touching_intervals_do_not_promote():
    champion = Standing("2", "deep_relu", 0.0100, 0.0090, 0.0110, 3, "a" * 64)
    touching = Standing("5", "deep_relu", 0.0085, 0.0080, 0.0090, 3, "a" * 64)
    assert not decide(touching, champion).promote
    below = Standing("5", "deep_relu", 0.0085, 0.0080, 0.0089999, 3, "a" * 64)
    assert decide(below, champion).promote


def test_what_has_an_interval():
    assert Standing("1", "pca", 0.01, 0.01, 0.01, 1, "a").has_interval
    assert not Standing("1", "ae", 0.01, 0.01, 0.01, 1, "a").has_interval
    assert Standing("1", "ae", 0.01, 0.009, 0.011, 2, "a").has_interval


def test_the_decisions_reasons_name_both_versions_and_their_intervals():
    cand, champ = standing("5", mean=0.0080, half=0.0003), standing("2", mean=0.0094, half=0.0010)
    assert cand.describe() == "v5 deep_leaky_relu 0.008000 [0.007700, 0.008300] (n=3)"
    assert decide(cand, champ).reason == f"{cand.describe()} lies wholly below champion {champ.describe()}"
    assert decide(cand, None).reason == f"no champion yet; {cand.describe()} takes the alias"
    other = standing("5", mean=0.0080, half=0.0003, sha="b" * 64)
    assert decide(other, champ).reason == (
        f"champion {champ.describe()} was evaluated on other data (eval sha256 {'a' * 12}, this run {'b' * 12}): "
        "not comparable, kept"
    )
    assert ineligible("notebook", 32) == "protocol 'notebook' is not the champion's 'holdout'"
    assert ineligible("holdout", 16) == "latent_dim 16 is not the champion's 32"


def test_version_tags_hold_each_number_exactly():
    s = Standing("2", "deep_relu", 0.1 + 0.2, 0.25, 0.35, 3, "a" * 64)
    tags = s.tags()
    assert tags == {
        "mnist_codec.codec_mse_mean": repr(0.1 + 0.2),
        "mnist_codec.codec_mse_ci95_low": "0.25",
        "mnist_codec.codec_mse_ci95_high": "0.35",
        "mnist_codec.codec_n_seeds": "3",
        "mnist_codec.eval_sha256": "a" * 64,
    }
    assert Standing.from_tags("2", {**tags, "mnist_codec.codec": "deep_relu"}) == s
    assert Standing.from_tags("2", {**tags, "mnist_codec.codec": "x", "mnist_codec.codec_n_seeds": "three"}) is None
    for key in tags:
        partial = {k: v for k, v in {**tags, "mnist_codec.codec": "x"}.items() if k != key}
        assert Standing.from_tags("2", partial) is None
