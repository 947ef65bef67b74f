"""metrics_accepted.yaml: which regressions a person let through, for which results, and why.

An acceptance covers exactly the metric, base and results it names; an entry sharing one of the
two digests is stale; a malformed file is an error naming the file and the line; writing it
keeps what was there and its header.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_codec.errors import GateError
from mnist_codec.evaluation import acceptance
from mnist_codec.evaluation.acceptance import Acceptance, Accepted, Regression
from mnist_codec.evaluation.gate import Rule

RULES = [Rule("*.mse", "lower"), Rule("*.psnr", "higher")]
A, B, C = "a" * 16, "b" * 16, "c" * 16
DIGESTS = st.sampled_from([A, B, C])
METRICS = st.sampled_from(["ae.mse", "ae.psnr", "pca.mse"])


def entry(results=A, base=B, metric="ae.mse", line=1) -> Acceptance:
    return Acceptance(results, "2026-12-07", "why", (Regression(metric, base, "+5.00%", line + 4),), line)


@settings(max_examples=60, deadline=None)
@given(METRICS, DIGESTS, DIGESTS, METRICS, DIGESTS, DIGESTS)
def test_an_acceptance_covers_exactly_the_results_it_names(metric, base, results, m2, b2, r2):
    accepted = Accepted(Path("f"), (entry(results, base, metric),))
    covered = accepted.covering(m2, b2, r2)
    assert (covered is not None) == ((m2, b2, r2) == (metric, base, results))
    stale = accepted.stale(m2, b2, r2)
    assert bool(stale) == (m2 == metric and (b2 == base) != (r2 == results))


def test_the_latest_acceptance_covers_first_and_holds_the_accepted_results():
    old, new = entry(A, B, line=1), entry(A, B, line=9)
    accepted = Accepted(Path("f"), (old, new))
    assert accepted.latest is new
    assert accepted.covering("ae.mse", B, A) == (new, new.regressions[0])
    assert Accepted(Path("f")).latest is None and Accepted(Path("f")).covering("ae.mse", B, A) is None
    two = Acceptance(A, "2026-12-07", "why", (Regression("ae.psnr", B, "-1", 3), Regression("ae.mse", C, "+1", 5)), 1)
    assert Accepted(Path("f"), (two,)).covering("ae.mse", C, A) == (two, two.regressions[1])


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / acceptance.FILENAME
    f.write_text(text)
    return f


GOOD = f"""\
# a header
accepted:
  - results: {A}
    date: 2026-12-07
    reason: the starting point
    regressions: []
  - results: {C}
    date: '2026-12-08'
    reason: "  slower, kept for stability  "
    regressions:
      - metric: ae.mse
        base: {A}
        change: +5.00%
"""


def test_a_file_is_read_with_each_entrys_line(tmp_path):
    f = write(tmp_path, GOOD)
    accepted = acceptance.load(f, RULES)
    assert accepted.path == f
    first, second = accepted.acceptances
    assert first == Acceptance(A, "2026-12-07", "the starting point", (), 3)
    assert second == Acceptance(
        C, "2026-12-08", "slower, kept for stability", (Regression("ae.mse", A, "+5.00%", 11),), 7
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n", "accepted:\n", "accepted: ~\n", "accepted: null\n"])
def test_an_empty_file_accepts_nothing(tmp_path, text):
    f = write(tmp_path, text)
    assert acceptance.load(f, RULES) == Accepted(f)


def test_no_file_accepts_nothing(tmp_path):
    assert acceptance.load(tmp_path / "none.yaml", RULES) == Accepted(tmp_path / "none.yaml")


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(GateError, match=f"^{tmp_path}: cannot be read: Is a directory$"):
        acceptance.load(tmp_path, RULES)


ENTRY = "accepted:\n  - results: {results}\n    date: {date}\n    reason: {reason}\n    regressions: {regs}\n"


def bad(results=A, date="2026-12-07", reason="ok", regs="[]") -> str:
    return ENTRY.format(results=results, date=date, reason=reason, regs=regs)


DIGEST = "a results digest \\(16 hex digits, 0-9 a-f\\)"
REASON = "a text that says why the regression is accepted \\(not empty\\)"
ENTRY0 = "'accepted\\[0\\]"
REG0 = "'accepted\\[0\\].regressions\\[0\\]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accepted: [\n", ":2: not valid YAML: expected the node content"),
        ("- 1\n", ": expected a mapping of accepted, found list"),
        ("acepted: []\n", ":1: unknown key 'acepted'; known keys are accepted"),
        ("accepted: 5\n", ":1: 'accepted' = 5 is not allowed; expected a list, each a mapping of results, date,"),
        ("accepted:\n  - 5\n", f":2: {ENTRY0}' = 5 is not allowed; expected a mapping of results, date, reason, regr"),
        (f"accepted:\n  - results: {A}\n", f":2: {ENTRY0}.date' is missing; expected a date, YYYY-MM-DD$"),
        (
            f"accepted:\n  - results: {A}\n    date: 2026-12-07\n    reason: x\n",
            f":2: {ENTRY0}.regressions' is missing; expected a list, each a mapping of metric, base, change$",
        ),
        ("accepted:\n  - results: abc\n", f":2: {ENTRY0}.results' = 'abc' is not allowed; expected {DIGEST}$"),
        (bad(results="12"), f":2: {ENTRY0}.results' = 12 is not allowed; expected {DIGEST}$"),
        (bad(results="A" * 16), f":2: {ENTRY0}.results' = 'AAAAAAAAAAAAAAAA' is not allowed; expected {DIGEST}$"),
        (bad(results="a" * 17), f":2: {ENTRY0}.results' = 'aaaaaaaaaaaaaaaaa' is not allowed"),
        (bad(results="[a]"), f":2: {ENTRY0}.results' = \\['a'\\] is not allowed; expected {DIGEST}$"),
        (bad(reason="''"), f":4: {ENTRY0}.reason' = '' is not allowed; expected {REASON}$"),
        (bad(reason="'   '"), f":4: {ENTRY0}.reason' = '   ' is not allowed; expected {REASON}$"),
        (bad(reason="~"), f":4: {ENTRY0}.reason' = None is not allowed; expected {REASON}$"),
        (bad(reason="null"), f":4: {ENTRY0}.reason' = None is not allowed"),
        (bad(reason="{a: 1}"), f":4: {ENTRY0}.reason' = {{'a': 1}} is not allowed; expected {REASON}$"),
        (bad(date="07.12.2026"), f":3: {ENTRY0}.date' = '07.12.2026' is not allowed; expected a date, YYYY-MM-DD$"),
        (bad(date="[1]"), f":3: {ENTRY0}.date' = \\[1\\] is not allowed; expected a date, YYYY-MM-DD$"),
        (
            bad(regs=f"\n      - metric: [ae.mse]\n        base: {B}\n        change: +1%"),
            f":6: {REG0}.metric' = \\['ae.mse'\\] is not allowed; expected a metric a rule of metrics_gate.yaml",
        ),
        (
            bad(regs=f"\n      - metric: ae.mse\n        base: {B}\n        change: [1]"),
            f":8: {REG0}.change' = \\[1\\] is not allowed; expected a text$",
        ),
        (bad(regs="5"), f":5: {ENTRY0}.regressions' = 5 is not allowed; expected a list, each a mapping of metric,"),
        (bad(regs="\n      - metric: ae.mse\n        base: " + B), f":6: {REG0}.change' is missing; expected a text$"),
        (
            bad(regs=f"\n      - metric: ae.msee\n        base: {B}\n        change: +1%"),
            f":6: {REG0}.metric' = 'ae.msee' is not allowed; expected a metric a rule of metrics_gate.yaml covers, as",
        ),
        (
            bad(regs=f"\n      - metric: mse\n        base: {B}\n        change: +1%"),
            f":6: {REG0}.metric' = 'mse' is not allowed; expected a metric a rule",
        ),
        (
            bad(regs=f"\n      - metric: ae.mse\n        base: {B[:-1]}\n        change: +1%"),
            f":7: {REG0}.base' = 'bbbbbbbbbbbbbbb' is not allowed; expected {DIGEST}$",
        ),
        (
            bad(regs=f"\n      - metric: ae.mse\n        base: {B}\n        change: +1%\n        why: x"),
            f":9: unknown key {REG0}.why'; known keys are metric, base, change$",
        ),
    ],
)
def test_a_malformed_file_is_an_error_naming_the_file_and_the_line(tmp_path, text, message):
    f = write(tmp_path, text)
    with pytest.raises(GateError, match=f"^{re.escape(str(f))}{message}"):
        acceptance.load(f, RULES)


def test_appending_keeps_the_header_and_every_acceptance(tmp_path):
    f = write(tmp_path, GOOD)
    accepted = acceptance.load(f, RULES)
    new = Acceptance(B, "2026-12-09", "a reason: with a colon", (Regression("ae.psnr", C, "-0.50%", 0),), 0)
    acceptance.append(accepted, new)
    text = f.read_text()
    assert text.startswith("# a header\naccepted:\n")
    again = acceptance.load(f, RULES)
    assert [a.results for a in again.acceptances] == [A, C, B]
    assert again.latest is not None and again.latest.reason == "a reason: with a colon"
    reg = again.latest.regressions[0]
    assert (reg.metric, reg.base, reg.change) == ("ae.psnr", C, "-0.50%")
    assert yaml.safe_load(text)["accepted"][1]["regressions"] == [{"metric": "ae.mse", "base": A, "change": "+5.00%"}]


def test_a_new_file_gets_the_standard_header(tmp_path):
    f = tmp_path / acceptance.FILENAME
    acceptance.append(Accepted(f), entry(A, B))
    text = f.read_text()
    assert text.startswith(acceptance.HEADER) and "\naccepted:\n- results: " + A in text
    assert acceptance.load(f, RULES).acceptances == (entry(A, B, line=len(acceptance.HEADER.splitlines()) + 2),)
    f.write_text("accepted: []\n")  # a file without a header comment gets the standard one
    acceptance.append(acceptance.load(f, RULES), entry(A, B))
    assert f.read_text().startswith(acceptance.HEADER)


def test_an_acceptance_as_written():
    acc = Acceptance(A, "2026-12-07", "why", (Regression("ae.mse", B, "+5.00%", 9),), 3)
    assert acceptance.as_dict(acc) == {
        "results": A,
        "date": "2026-12-07",
        "reason": "why",
        "regressions": [{"metric": "ae.mse", "base": B, "change": "+5.00%"}],
    }
    text = acceptance.render(Path("/nonexistent/x.yaml"), [acceptance.as_dict(acc)])
    assert text == acceptance.HEADER + (
        f"accepted:\n- results: {A}\n  date: '2026-12-07'\n  reason: why\n  regressions:\n"
        f"  - metric: ae.mse\n    base: {B}\n    change: +5.00%\n"
    )


def test_a_long_reason_in_any_script_is_written_as_typed_and_read_back_whole(tmp_path):
    f = tmp_path / acceptance.FILENAME
    reason = "±0.3% on LeakyReLU: a 2× smaller learning rate, slower to converge, kept for stability " * 2
    acceptance.append(Accepted(f), Acceptance(A, "2026-12-07", reason.strip(), ()))
    text = f.read_text(encoding="utf-8")
    assert "±0.3% on LeakyReLU: a 2× smaller" in text  # not escaped
    body = text[len(acceptance.HEADER) :].splitlines()  # quoted (it holds ': '), wrapped at 100 columns
    assert body[3:5] == [
        "  reason: '±0.3% on LeakyReLU: a 2× smaller learning rate, slower to converge, kept for stability ±0.3%",
        "    on LeakyReLU: a 2× smaller learning rate, slower to converge, kept for stability'",
    ]
    assert acceptance.load(f, RULES).acceptances[0].reason == reason.strip()


def test_an_older_acceptance_still_covers_its_own_results():
    older, newer = entry(A, B, line=1), entry(C, B, line=9)
    assert Accepted(Path("f"), (older, newer)).covering("ae.mse", B, A) == (older, older.regressions[0])


def test_a_header_of_several_lines_is_kept_as_it_is(tmp_path):
    f = write(tmp_path, "# one\n#\n# two\n\naccepted: []\n")
    acceptance.append(acceptance.load(f, RULES), entry(A, B))
    assert f.read_text().startswith("# one\n#\n# two\n\naccepted:\n")
