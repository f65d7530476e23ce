"""The committed ms-swift argument names (used by validation without importing ms-swift) match the installed ms-swift."""

from __future__ import annotations

from pathlib import Path

from bbuqc.config import swift_fields


def test_the_committed_field_list_is_the_installed_ms_swift():
    text = Path(swift_fields.__file__).read_text()
    committed = text.split(swift_fields.MARK_BEGIN, 1)[1].split(swift_fields.MARK_END, 1)[0]
    assert swift_fields.MARK_BEGIN + committed + swift_fields.MARK_END == swift_fields.render(), (
        "stale: run `python -m bbuqc.config.swift_fields` after an ms-swift upgrade")


def test_the_lists_hold_what_bbuqc_relies_on():
    assert {"log_entropy", "overlong_filter", "importance_sampling_level"} <= swift_fields.RLHF_FIELDS
    assert "num_generations" not in swift_fields.SFT_FIELDS
    assert {"grpo", "bnpo", "dr_grpo", "dapo"} <= set(swift_fields.GRPO_LOSS_TYPES)
