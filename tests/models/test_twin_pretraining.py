"""The demo twin's pretraining: what it learns from, and that it never sees a demo world's image."""

from __future__ import annotations

import json
from collections import Counter

from bbuqc import demo
from bbuqc.models import twin_pretraining as tp


def test_an_image_facts_are_its_categories_and_each_attribute_value():
    ref = json.dumps({"dataset": "BBU", "objects_total": 3, "统计": [
        {"类别": "BBU设备", "品牌": {"华为": 1}, "可见性": {"完整": 1}},
        {"类别": "BBU安装螺丝", "符合性": {"符合": 1, "不符合": 1}}], "备注": ["遮挡"]}, ensure_ascii=False)
    assert tp.image_facts(ref) == {"BBU设备", "BBU设备/品牌=华为", "BBU设备/可见性=完整", "BBU安装螺丝",
                                   "BBU安装螺丝/符合性=符合", "BBU安装螺丝/符合性=不符合"}
    assert tp.image_facts(json.dumps({"dataset": "RRU", "objects_total": 0, "统计": []})) == set()
    # an RRU image's install point: the per-point rules read it, so the tower learns the plate
    rru = json.dumps({"dataset": "RRU", "objects_total": 1, "统计": [{"类别": "紧固件", "安装状态": {"合格": 1}}],
                      "分组统计": {"2": 1}}, ensure_ascii=False)
    assert tp.image_facts(rru) == {"紧固件", "紧固件/安装状态=合格", "分组统计=2"}


def test_the_pretraining_world_is_none_of_the_demo_worlds():
    # group numbers start at seed x 10^6 (bbuqc/data/synth): another seed shares no group, hence no image,
    # with the worlds the demo trains, selects and tests on
    assert tp.WORLD_SEED not in {demo.TRAIN_SEED, demo.TEST_SEED, demo.GRPO_SEED}


def test_a_caption_states_each_counted_value_in_plain_words_and_no_summary_syntax():
    ref = json.dumps({"dataset": "RRU", "objects_total": 3, "统计": [
        {"类别": "尾纤", "标签": {"无标签": 1, "有标签": 1}, "套管保护": {"无套管": 2}},
        {"类别": "标签", "文本": {"RRU-C3": 1}}], "分组统计": {"1": 3}}, ensure_ascii=False)
    assert tp.caption(ref) == "尾纤、无标签、有标签、无套管、无套管；标签、RRU-C3；分组统计、1"
    # the reading stage's word F1 counts a caption's words across both separators
    assert tp.caption_words(tp.caption(ref)) == Counter(
        {"尾纤": 1, "无标签": 1, "有标签": 1, "无套管": 2, "标签": 1, "RRU-C3": 1, "分组统计": 1, "1": 1})
    assert tp.caption(None) == "无关图片"
    # the summary's own syntax never appears: the SFT, not the pretraining, teaches the missions' JSON
    assert not set(tp.caption(ref)) & set('{}":,') and "类别" not in tp.caption(ref)


def test_a_caption_writes_each_value_as_the_token_the_summary_json_writes():
    # the reading the pretraining teaches carries over to the SFT only through the same token ids
    from bbuqc.models.tokenizer import build_backend_tokenizer

    tokenizer = build_backend_tokenizer("compact")
    summary = json.dumps({"类别": "尾纤", "套管保护": {"无套管": 1}}, ensure_ascii=False, separators=(",", ":"))
    caption = tp.caption(json.dumps({"统计": [{"类别": "尾纤", "套管保护": {"无套管": 1}}]}, ensure_ascii=False))
    for word in ("尾纤", "无套管"):
        (word_id,) = tokenizer.encode(word).ids
        assert word_id in tokenizer.encode(summary).ids and word_id in tokenizer.encode(caption).ids
