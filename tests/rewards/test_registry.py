"""The registry: ids, names, errors, specs and the reward sets."""

import subprocess
import sys
from pathlib import Path

import pytest

import bbuqc.rewards as rewards
from bbuqc.rewards import (
    LEGACY_IDS,
    REGISTRY,
    LegacyRewardIdError,
    RewardIdError,
    get_reward,
    reward_id_problem,
    reward_names,
    reward_spec,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

SUMMARY_IDS = [
    "summary.format",
    "summary.header",
    "summary.strict",
    "summary.parse",
    "summary.no_dup_keys",
    "summary.dataset",
    "summary.objects_total",
    "summary.objects_total_lb",
    "summary.category_recall",
    "summary.category_f1",
    "summary.content_eq",
    "summary.content_f1",
    "summary.content_structured_tversky",
    "summary.text_bbu",
    "summary.notes_bbu",
    "summary.notes_presence",
    "summary.group_stats_presence",
]
VERDICT_IDS = ["verdict.format", "verdict.label", "verdict.consistency", "verdict.cost"]


def test_every_id_is_registered_once_in_order():
    assert reward_names() == SUMMARY_IDS + VERDICT_IDS
    assert list(REGISTRY) == reward_names()


@pytest.mark.parametrize("rid", SUMMARY_IDS + VERDICT_IDS)
def test_reward_is_named_by_its_id(rid):
    fn = get_reward(rid)
    assert callable(fn)
    assert fn.__name__ == rid  # ms-swift names the metric after __name__
    assert get_reward(rid) is fn
    spec = reward_spec(rid)
    assert spec.id == rid and spec.lo < spec.hi and spec.doc
    assert spec.namespace == rid.split(".")[0]


def test_ranges():
    ranges = {rid: (reward_spec(rid).lo, reward_spec(rid).hi) for rid in reward_names()}
    assert ranges["summary.format"] == (0.0, 1.0)
    assert ranges["summary.header"] == (-1.0, 1.0)
    for rid in ("summary.strict", "summary.parse", "summary.no_dup_keys"):
        assert ranges[rid] == (-1.0, 0.0)
    for rid in ("summary.text_bbu", "summary.notes_bbu", "verdict.consistency"):
        assert ranges[rid] == (-1.0, 1.0)
    assert ranges["verdict.format"] == ranges["verdict.label"] == (0.0, 1.0)
    assert ranges["verdict.cost"] == (-4.0, 1.0)  # at its default costs (test_cost.py: other costs)


def test_unknown_id_lists_the_known_ids():
    with pytest.raises(KeyError) as info:
        get_reward("summary.nope")
    message = str(info.value)
    assert "summary.nope" in message
    for rid in reward_names():
        assert rid in message
    assert isinstance(info.value, RewardIdError)
    assert not isinstance(info.value, LegacyRewardIdError)


def test_close_misspelling_gets_a_hint():
    assert "did you mean 'summary.format'" in reward_id_problem("summary.fromat")


@pytest.mark.parametrize(
    "legacy, new",
    [
        ("summary_format", "summary.format"),
        ("summary_header", "summary.header"),
        ("summary_strict", "summary.strict"),
        ("summary_parse", "summary.parse"),
        ("summary_content", "summary.content_eq"),
        ("summary_objects_total_lb", "summary.objects_total_lb"),
        ("summary_content_structured_tversky", "summary.content_structured_tversky"),
        ("verdict_format", "verdict.format"),
        ("verdict_label", "verdict.label"),
        ("verdict_consistency", "verdict.consistency"),
    ],
)
def test_legacy_ids_are_errors_naming_the_new_id(legacy, new):
    assert LEGACY_IDS[legacy] == new
    with pytest.raises(LegacyRewardIdError) as info:
        get_reward(legacy)
    assert isinstance(info.value, KeyError)
    assert repr(new) in str(info.value) and repr(legacy) in str(info.value)
    assert reward_id_problem(legacy) == str(info.value)


def test_every_id_has_its_underscore_legacy_form():
    for rid in reward_names():
        assert LEGACY_IDS[rid.replace(".", "_", 1)] == rid
    assert not set(LEGACY_IDS) & set(REGISTRY)
    assert set(LEGACY_IDS.values()) <= set(REGISTRY)


@pytest.mark.parametrize("name", [None, 3, ["summary.format"], "", "Summary.Format"])
def test_reward_id_problem_never_raises(name):
    problem = reward_id_problem(name)
    assert isinstance(problem, str) and "known ids" in problem
    with pytest.raises(KeyError):
        get_reward(name)


def test_reward_id_problem_is_none_for_known_ids():
    assert all(reward_id_problem(rid) is None for rid in reward_names())


def test_public_api():
    for name in rewards.__all__:
        assert hasattr(rewards, name), name


def test_import_needs_no_heavy_libraries():
    code = (
        "import sys, bbuqc.rewards as r; "
        "r.get_reward('summary.format')(['x'], metadata=[{}]); "
        "r.get_reward('verdict.label')(['通过'], group_label=['通过']); "
        "heavy = [m for m in ('torch', 'transformers', 'swift', 'numpy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- errors: counted per id, warned once, raised in strict mode ---------------


def _broken_reward(rid, score, prepare=None):
    from bbuqc.rewards.base import RewardFunction, RewardSpec

    real = REGISTRY[rid]
    return RewardFunction(RewardSpec(rid, real.spec.lo, real.spec.hi, "broken"), prepare or real._prepare, score)


@pytest.fixture
def fresh_errors(monkeypatch):
    from bbuqc.rewards import base

    monkeypatch.setattr(base, "_warned", set())
    rewards.pop_error_metrics()
    yield
    rewards.pop_error_metrics()


def test_errors_are_counted_per_id_and_popped(fresh_errors, caplog):
    def flaky(ctx):
        if "bad" in ctx.text:
            raise ValueError("scorer bug")
        return 1.0

    raising = _broken_reward("summary.format", flaky)
    out_of_range = _broken_reward("summary.header", lambda ctx: 7.5)
    batch = ["good", "bad", "bad again"]
    with caplog.at_level("WARNING", logger="bbuqc.rewards.base"):
        assert raising(batch) == [1.0, 0.0, 0.0]
        assert raising(batch) == [1.0, 0.0, 0.0]
        assert out_of_range(batch) == [0.0, 0.0, 0.0]
        get_reward("summary.strict")(batch)  # a sound reward: called, no errors
    assert rewards.pop_error_metrics() == {
        "rewards/summary.format/errors": 4.0,
        "rewards/summary.header/errors": 3.0,
        "rewards/summary.strict/errors": 0.0,
    }
    assert rewards.pop_error_metrics() == {}  # reset by the pop
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # one per id, however many rows fail
    assert "summary.format" in warnings[0] and "scorer bug" in warnings[0]
    assert "summary.header" in warnings[1] and "7.5" in warnings[1]


def test_a_failing_prepare_counts_every_row(fresh_errors):
    def prepare(completions, columns):
        raise RuntimeError("bad column")

    reward = _broken_reward("verdict.label", lambda row: 1.0, prepare=prepare)
    assert reward(["a", "b"], group_label=["通过"]) == [0.0, 0.0]
    assert rewards.pop_error_metrics() == {"rewards/verdict.label/errors": 2.0}


def test_strict_mode_raises_and_ends(fresh_errors):
    reward = _broken_reward("summary.format", lambda ctx: 7.5)
    with rewards.strict_rewards(), pytest.raises(rewards.RewardError, match=r"summary.format: row 0 scored 7.5"):
        reward(["x"])
    assert reward(["x"]) == [0.0]  # strict mode ended with the block


def test_registry_reads_as_decorated_scorers():
    from bbuqc.rewards import verdict
    from bbuqc.rewards.summary import scorers as summary_scorers

    # The decorator registers and returns the scorer itself: callable directly.
    assert REGISTRY["summary.format"]._score is summary_scorers.format_
    assert REGISTRY["verdict.label"]._score is verdict.label_score
    assert reward_spec("summary.format").doc == summary_scorers.format_.__doc__
