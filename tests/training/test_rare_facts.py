"""data.rare_fact_repeat: summary images whose reference states a rare fact are trained on several times (the
failures that decide a verdict are rare per image)."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.rewards.summary.facts import closed_facts, states_rare_fact
from bbuqc.training.data import repeat_rare_facts


def _summary(*stats: dict) -> str:
    return "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + json.dumps(
        {"dataset": "BBU", "objects_total": len(stats), "统计": list(stats)}, ensure_ascii=False)


SCREW_OK = {"类别": "BBU安装螺丝", "符合性": {"符合": 2}}
SCREW_BAD = {"类别": "BBU安装螺丝", "符合性": {"符合": 1, "不符合": 1}}
LABEL = {"类别": "标签", "文本": {"BBU-7": 1}}


def test_closed_facts_are_categories_and_closed_attribute_values():
    obj = {"统计": [SCREW_BAD, LABEL, {"类别": "站点距离", "站点距离": {"26": 1}}]}
    assert closed_facts(obj) == {("BBU安装螺丝",), ("BBU安装螺丝", "符合性", "符合"),
                                 ("BBU安装螺丝", "符合性", "不符合"), ("标签",), ("站点距离",)}


def test_images_with_a_rare_fact_are_repeated_and_the_rest_kept_once():
    rows = [_summary(SCREW_OK)] * 18 + [_summary(SCREW_BAD), "无关图片"]
    train = Dataset.from_list([{"solution": s, "i": i} for i, s in enumerate(rows)])
    out, n_rare = repeat_rare_facts(train, 3, 0.1)  # 不符合: 1 image of 20, under 10%
    assert n_rare == 1
    assert [r["i"] for r in out].count(18) == 3
    assert all([r["i"] for r in out].count(i) == 1 for i in range(20) if i != 18)  # irrelevant image: once
    same, n = repeat_rare_facts(train, 1, 0.1)
    assert n == 1 and len(same) == 20  # repeat 1: the rows as they are


def test_a_fact_is_rare_by_its_share_of_all_images_and_an_image_without_a_summary_states_none():
    objects = [{"统计": [SCREW_OK]}] * 7 + [{"统计": [SCREW_BAD]}] + [None] * 2
    assert states_rare_fact(objects, 0.15) == [False] * 7 + [True] + [False] * 2  # 不符合: 1 of 10
    assert states_rare_fact(objects, 0.1) == [False] * 10  # 1 of 10 is not fewer than 10%


@pytest.mark.parametrize("overrides, expected", [
    (["data.rare_fact_repeat=0"], "data.rare_fact_repeat=0: expected an integer >= 1"),
    (["data.rare_fact_share=0"], "data.rare_fact_share=0.0: expected 0 < rare_fact_share <= 1"),
    (["data.rare_fact_share=1.5"], "data.rare_fact_share=1.5: expected 0 < rare_fact_share <= 1"),
    (["task=verdict", "reward=verdict", "data.rare_fact_repeat=2"], "data.rare_fact_repeat=2: repeats summary images"),
])
def test_bad_rare_fact_settings_are_refused_naming_the_field(overrides, expected):
    found = problems(compose("train", overrides), "train")
    assert any(line.startswith(expected) for line in found), found
