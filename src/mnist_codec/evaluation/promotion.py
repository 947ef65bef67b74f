"""Who serves: the rule that moves the registry's ``champion`` alias.

After every evaluation the best codec of the run (lowest mean MSE) is the candidate, and
its representative model is the seed whose MSE is the median of its seeds (not the
luckiest seed: the champion's claim is its codec's interval, not a draw picked on the
evaluation data). The candidate takes the alias only when

- the run used the default protocol (holdout) and code size (32): the alias names the
  model to serve for the project's question, not the best model of any variant;
- and there is no champion, or the candidate's 95% interval over seeds lies wholly below
  the champion's on the same evaluation data (the rule the comparison table uses to
  order codecs). A one-seed stochastic codec has no interval and never replaces a
  champion; PCA is deterministic and its interval is its value.

Every decision comes with its reason, which the evaluate run and the candidate version record.
"""

from __future__ import annotations

from dataclasses import dataclass

# The project's question: the held-out test images, a 32-number code (params.yaml's defaults;
# a test holds them equal, so an edit to params.py re-runs no stage for this rule's sake).
CHAMPION_PROTOCOL = "holdout"
CHAMPION_LATENT_DIM = 32
DETERMINISTIC = {"pca"}  # codecs that give the same model on every seed
_PREFIX = "mnist_codec.codec_"  # version tags of the codec-level summary


@dataclass(frozen=True)
class Standing:
    """A registered version and the evaluation of its codec over seeds."""

    version: str
    codec: str
    mean: float
    low: float  # 95% interval of the codec's mean MSE
    high: float
    n: int
    eval_sha256: str

    @property
    def has_interval(self) -> bool:
        return self.codec in DETERMINISTIC or self.n >= 2

    def tags(self) -> dict[str, str]:
        """Version tags that carry this standing (read back by :meth:`from_tags`)."""
        return {
            f"{_PREFIX}mse_mean": repr(self.mean),
            f"{_PREFIX}mse_ci95_low": repr(self.low),
            f"{_PREFIX}mse_ci95_high": repr(self.high),
            f"{_PREFIX}n_seeds": str(self.n),
            "mnist_codec.eval_sha256": self.eval_sha256,
        }

    @classmethod
    def from_tags(cls, version: str, tags: dict[str, str]) -> Standing | None:
        """The standing a version's tags record, or None if it was never evaluated."""
        try:
            return cls(
                version,
                tags["mnist_codec.codec"],
                float(tags[f"{_PREFIX}mse_mean"]),
                float(tags[f"{_PREFIX}mse_ci95_low"]),
                float(tags[f"{_PREFIX}mse_ci95_high"]),
                int(tags[f"{_PREFIX}n_seeds"]),
                tags["mnist_codec.eval_sha256"],
            )
        except (KeyError, ValueError):
            return None

    def describe(self) -> str:
        return f"v{self.version} {self.codec} {self.mean:.6f} [{self.low:.6f}, {self.high:.6f}] (n={self.n})"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def median_seed(values: list[float]) -> int:
    """Index of the median value (the lower middle one for an even count)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(values) - 1) // 2]


def lowest_mean(means: dict[str, float]) -> str:
    """The candidate for the alias: the codec with the lowest mean MSE (the first one listed on a tie)."""
    return min(means, key=lambda name: means[name])


def ineligible(protocol: str, latent_dim: int) -> str | None:
    """Why a run's codecs cannot take the alias, or None when they can."""
    if protocol != CHAMPION_PROTOCOL:
        return f"protocol {protocol!r} is not the champion's {CHAMPION_PROTOCOL!r}"
    if latent_dim != CHAMPION_LATENT_DIM:
        return f"latent_dim {latent_dim} is not the champion's {CHAMPION_LATENT_DIM}"
    return None


def decide(candidate: Standing, champion: Standing | None, champion_version: str | None = None) -> Decision:
    """Whether ``candidate`` takes the alias from ``champion`` (None: no usable record).

    ``champion_version`` is the alias's version when it exists but has no standing (it was
    never evaluated): then it is replaced.
    """
    if champion is None:
        why = "no champion yet" if champion_version is None else f"champion v{champion_version} has no evaluation"
        return Decision(True, f"{why}; {candidate.describe()} takes the alias")
    if champion.version == candidate.version:
        return Decision(False, f"{candidate.describe()} is already the champion")
    if champion.eval_sha256 != candidate.eval_sha256:
        return Decision(
            False,
            f"champion {champion.describe()} was evaluated on other data (eval sha256 "
            f"{champion.eval_sha256[:12]}, this run {candidate.eval_sha256[:12]}): not comparable, kept",
        )
    if not candidate.has_interval:
        return Decision(
            False,
            f"{candidate.describe()}: one seed gives no interval; train n_seeds >= 2 to "
            f"challenge champion {champion.describe()}",
        )
    if candidate.high < champion.low:
        return Decision(True, f"{candidate.describe()} lies wholly below champion {champion.describe()}")
    return Decision(
        False,
        f"{candidate.describe()} does not lie wholly below champion {champion.describe()}: "
        f"not better by more than noise",
    )
