"""make mutation's scoring (tests/mutation.py): a module's score, the reviewed equivalents, the floor.

mutmut's own run is CI's `make mutation`; here its results are given, as the exit codes mutmut
records per mutant, and the decisions made from them are held.
"""

from __future__ import annotations

import subprocess

import pytest

import mutation
from mutation import Equivalent, MutationError

GATE = "mnist_codec.evaluation.gate"
STATS = "mnist_codec.evaluation.stats"


def name(module: str, function: str, n: int) -> str:
    return f"{module}.x_{function}__mutmut_{n}"


def test_a_mutants_module_and_a_files_module():
    assert mutation.module_of(name(GATE, "_limit", 3)) == GATE
    assert mutation.module_of("mnist_codec.evaluation.verdict.xǁVerdictǁstatus__mutmut_2") == (
        "mnist_codec.evaluation.verdict"
    )
    assert mutation.module_name("src/mnist_codec/evaluation/gate.py") == GATE
    with pytest.raises(MutationError, match="'gate' is not a mutmut mutant name"):
        mutation.module_of("gate")


def test_the_score_counts_killed_over_every_mutant_but_the_equivalent():
    results = {
        name(GATE, "a", 1): 1,  # killed
        name(GATE, "a", 2): 36,  # timeout: the tests noticed (a loop)
        name(GATE, "a", 3): 0,  # survived
        name(GATE, "a", 4): 33,  # reached by no test: survived too
        name(GATE, "a", 5): 0,  # survived, reviewed as equivalent
        name(STATS, "b", 1): 1,
    }
    equivalent = {name(GATE, "a", 5): Equivalent(name(GATE, "a", 5), ("- a", "+ b"), "why", 3)}
    scores = mutation.score(results, [GATE, STATS, "mnist_codec.params"], equivalent)
    gate = scores[GATE]
    assert (len(gate.killed), len(gate.survived), len(gate.equivalent)) == (2, 2, 1)
    assert gate.percent == 50.0 and scores[STATS].percent == 100.0
    assert scores["mnist_codec.params"].percent == 100.0  # no mutants: nothing to kill
    table = mutation.table(scores, 90.0)
    assert "mnist_codec.evaluation.gate" in table and "50.0%  BELOW 90%" in table and "100.0%  ok" in table


def test_an_unfinished_run_or_a_stray_mutant_cannot_be_scored():
    with pytest.raises(MutationError, match="was not tested"):
        mutation.score({name(GATE, "a", 1): None}, [GATE], {})
    with pytest.raises(MutationError, match="is in no module of"):
        mutation.score({name(STATS, "a", 1): 1}, [GATE], {})


DIFF = """\
--- src/mnist_codec/evaluation/gate.py
+++ src/mnist_codec/evaluation/gate.py
@@ -1,3 +1,3 @@
 def _limit(rule, baseline, margin):
-    return baseline - margin
+    return baseline + margin
"""


def test_a_mutants_change_is_its_removed_and_added_lines():
    assert mutation.changed_lines(DIFF) == ["- return baseline - margin", "+ return baseline + margin"]


def test_an_equivalent_entry_is_stale_when_its_mutant_is_gone_changed_or_killed():
    m = name(GATE, "_limit", 1)
    entry = Equivalent(m, ("- return baseline - margin", "+ return baseline + margin"), "why", 7)
    assert mutation.stale([entry], {m: 0}, {m: DIFF}) == []
    gone = mutation.stale([entry], {}, {})
    assert gone == [
        (
            f"tests/mutation_equivalents.yaml:7: {m}: no such mutant now (its function changed?): "
            "review it again or remove it"
        )
    ]
    other = DIFF.replace("baseline + margin", "baseline * margin")
    assert "it now changes other lines" in mutation.stale([entry], {m: 0}, {m: other})[0]
    killed = mutation.stale([entry], {m: 1}, {m: DIFF})
    assert killed == [
        f"tests/mutation_equivalents.yaml:7: {m}: a test kills it now: it was not equivalent, remove it from the list"
    ]


def test_the_list_of_equivalents_is_read_with_each_entrys_line(tmp_path):
    f = tmp_path / "eq.yaml"
    f.write_text(
        "# reviewed\nequivalent:\n"
        f"  - mutant: {name(GATE, 'a', 1)}\n    change: ['- x', '+ y']\n    reason: ' the same number '\n"
    )
    assert mutation.load_equivalents(f) == [Equivalent(name(GATE, "a", 1), ("- x", "+ y"), "the same number", 3)]
    assert mutation.load_equivalents(tmp_path / "none.yaml") == []
    f.write_text("equivalent: []\n")
    assert mutation.load_equivalents(f) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("equivalent: [\n", "not valid YAML"),
        ("- 1\n", ":1: expected one key, 'equivalent'"),
        ("equivalents: []\n", ":1: expected one key, 'equivalent'"),
        ("equivalent:\n  - mutant: x\n", ":2: an entry needs exactly mutant, change and reason"),
        (
            f"equivalent:\n  - {{mutant: {name(GATE, 'a', 1)}, change: ['- x'], reason: ''}}\n",
            ":2: .* needs a mutant name and a reason",
        ),
        ("equivalent:\n  - {mutant: gate, change: ['- x'], reason: r}\n", "'gate' is not a mutmut mutant name"),
        (
            f"equivalent:\n  - {{mutant: {name(GATE, 'a', 1)}, change: '- x', reason: r}}\n",
            ":2: .*'change' lists the lines",
        ),
        (
            (
                f"equivalent:\n  - {{mutant: {name(GATE, 'a', 1)}, change: ['- x'], reason: r}}\n"
                f"  - {{mutant: {name(GATE, 'a', 1)}, change: ['- x'], reason: r}}\n"
            ),
            ":3: .* is listed twice",
        ),
    ],
)
def test_a_malformed_list_is_an_error_naming_the_line(tmp_path, text, message):
    f = tmp_path / "eq.yaml"
    f.write_text(text)
    with pytest.raises(MutationError, match=message):
        mutation.load_equivalents(f)


def test_the_committed_list_is_well_formed_and_names_mutated_modules():
    entries = mutation.load_equivalents(mutation.REPO / mutation.EQUIVALENTS)
    modules = set(mutation.only_mutate(mutation.REPO))
    assert all(mutation.module_of(e.mutant) in modules for e in entries)
    assert all(len(e.reason) > 20 for e in entries)  # a reason a reviewer can check


# --- which modules a change reaches (tests/mutation_scope.py): CI's `make mutation`, --changed ----


def test_a_modules_world_is_its_code_what_it_imports_and_the_tests_that_reach_it():
    import mutation_scope as scope

    selection = mutation.selected_test_files(mutation.REPO)
    worlds = scope.worlds(mutation.REPO, [GATE, "mnist_codec.evaluation.promotion"], selection)
    gate, promotion = worlds[GATE], worlds["mnist_codec.evaluation.promotion"]
    assert {"src/mnist_codec/evaluation/gate.py", "src/mnist_codec/config.py"} <= gate  # itself, what it imports
    assert {"tests/test_gate_rules.py", "tests/test_verdict.py", "tests/verdicts.py"} <= gate  # its tests, their helper
    assert "src/mnist_codec/evaluation/verdict.py" not in gate  # verdict imports gate, not the other way
    assert "tests/test_promotion.py" in promotion and "tests/test_stats.py" not in promotion
    assert scope.reached(worlds, {"tests/test_promotion.py"}) == ["mnist_codec.evaluation.promotion"]
    assert scope.reached(worlds, {"src/mnist_codec/config.py"}) == [GATE]  # promotion does not import the config layer
    assert scope.reached(worlds, {"README.md", "src/mnist_codec/serving/wire.py"}) == []
    assert scope.reached(worlds, {"tests/mutation_equivalents.yaml"}) == list(worlds)  # every run reads it


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def _commit(root, path, text, message):
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", message)
    return _git(root, "rev-parse", "HEAD")


def test_the_base_is_the_gates_and_on_main_the_parent_of_the_last_change_to_the_code_that_decides(
    tmp_path, monkeypatch
):
    import mutation_scope as scope

    monkeypatch.delenv("GATE_BASE", raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    first = _commit(root, "src/gate.py", "a = 1\n", "the gate")
    assert scope.choose_base(root, ["src/gate.py"])[0] is None  # its one change has no parent: every module
    second = _commit(root, "src/gate.py", "a = 2\n", "the gate, changed")
    _commit(root, "README.md", "docs\n", "docs only")
    base, why = scope.choose_base(root, ["src/gate.py"])
    assert base == first and why.startswith(f"the parent of {second[:7]}")  # main: the newest change, re-proved
    assert scope.changed_since(root, base) == {"src/gate.py", "README.md"}
    (root / "new.py").write_text("b = 1\n")  # untracked, and an edit not yet committed: both are the change
    (root / "README.md").write_text("edited\n")
    assert scope.changed_since(root, _git(root, "rev-parse", "HEAD")) == {"new.py", "README.md"}
    _git(root, "update-ref", "refs/remotes/origin/main", second)
    _git(root, "checkout", "-q", "-b", "topic")
    _commit(root, "src/other.py", "c = 1\n", "a branch")
    assert scope.choose_base(root, ["src/gate.py"]) == (second, "the merge-base with origin/main")
    monkeypatch.setenv("GATE_BASE", first)
    assert scope.choose_base(root, ["src/gate.py"]) == (first, "GATE_BASE")
    with pytest.raises(ValueError, match="cannot compare the working tree with 'nope'"):
        scope.changed_since(root, "nope")
