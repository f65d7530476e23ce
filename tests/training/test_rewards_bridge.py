"""bbuqc rewards registered into ms-swift's ORM registry, named by reward id."""

from __future__ import annotations

from swift.rewards import orms

from bbuqc.rewards import get_reward
from bbuqc.training.rewards import register_rewards


def test_registered_orm_is_named_by_id_and_scores_like_the_reward():
    ids = register_rewards(["summary.format", "verdict.label"])
    assert ids == ["summary.format", "verdict.label"]
    orm = orms["verdict.label"](args=None)
    assert type(orm).__name__ == "verdict.label"  # ms-swift's metric name: rewards/verdict.label/mean
    completions = ["通过\n理由: 图片_1 符合", "不通过\n理由: 缺少挡风板"]
    labels = ["通过", "通过"]
    assert orm(completions, group_label=labels, trainer_state=None) == [1.0, 0.0]
    assert orm(completions, group_label=labels) == get_reward("verdict.label")(completions, group_label=labels)
    assert register_rewards(["verdict.label"]) == ["verdict.label"] and orms["verdict.label"] is type(orm)
