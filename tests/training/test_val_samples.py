"""Validation with several sampled answers per row (`train.val_samples`, issue 31): the verdicts are majority-voted as
`bbuqc-evaluate` votes them (val/accuracy), and val/accuracy_mean is one sample's accuracy on average."""

from __future__ import annotations

import pytest
from support import compose

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.protocol import verdict_answer
from bbuqc.stage_b.metrics import compute_metrics, score_answers
from bbuqc.training.validation import Generator, answer_records, verdict_figures

P, F = verdict_answer("通过", "图片_1 挡风板安装规范"), verdict_answer("不通过", "图片_1 缺少挡风板")
LABELS = ["通过", "不通过", "通过"]
SAMPLES = [[P, P, F], [P, F, F], [F, F, P]]  # votes: right, right, wrong; samples right: 2 + 2 + 1 of 9


def test_samples_are_voted_as_evaluation_votes_them_and_averaged():
    rows = [{"group_label": label, "summaries": {}} for label in LABELS]
    figures = verdict_figures(rows, SAMPLES)
    assert figures["val/accuracy"] == pytest.approx(2 / 3)
    assert figures["val/accuracy_mean"] == pytest.approx(5 / 9)
    records = [{"label": label, "answers": a, "rewards": score_answers(a, label, {})}
               for label, a in zip(LABELS, SAMPLES)]
    evaluated = compute_metrics(records)["overall"]  # what bbuqc-evaluate reports for 3 samples per group
    assert figures["val/accuracy"] == evaluated["accuracy"]
    assert figures["val/false_pass_rate"] == evaluated["false_pass_rate"]
    assert figures["val/verdict.label"] == pytest.approx(evaluated["rewards"]["verdict.label"])
    # one answer per row: as before, no mean over samples
    assert "val/accuracy_mean" not in verdict_figures(rows, [a[0] for a in SAMPLES])
    assert [r["answer"] for r in answer_records("verdict", rows, SAMPLES, 2)] == [P, P]  # the first sample kept


def test_val_samples_must_be_positive():
    cfg = compose("train", ["train.val_samples=0"])
    assert problems(cfg, "train") == ["train.val_samples=0: expected an integer >= 1"]


def test_the_generator_samples_n_answers_per_row(session_cache):
    from bbuqc.models.loading import load_model_and_processor
    from bbuqc.models.tiny import ensure_tiny_model

    model, processor = load_model_and_processor(ensure_tiny_model("text"), multimodal=False)
    rows = [{"messages": [{"role": "user", "content": text}]} for text in ("挡风板", "接地线", "线缆")]
    answers = Generator(model, processor, "verdict", max_new_tokens=6, batch_size=2, samples=3,
                        temperature=1.0).answers(rows)
    assert [len(a) for a in answers] == [3, 3, 3] and all(isinstance(x, str) for a in answers for x in a)
    greedy = Generator(model, processor, "verdict", max_new_tokens=6, batch_size=2).answers(rows)
    assert len(greedy) == 3 and all(isinstance(x, str) for x in greedy)


def test_best_of_n_is_the_share_of_rows_some_sample_gets_right():
    rows = [{"group_label": label, "summaries": {}} for label in [*LABELS, "通过"]]
    figures = verdict_figures(rows, [*SAMPLES, [F, F, F]])
    assert figures["val/accuracy_best"] == pytest.approx(3 / 4)  # the fourth row: no sample passes it
    assert figures["val/accuracy_mean"] == pytest.approx(5 / 12)
    assert "val/accuracy_best" not in verdict_figures(rows, [a[0] for a in [*SAMPLES, [F]]])


def test_summary_best_of_n_takes_each_images_best_sample():
    from bbuqc.training.validation import summary_figures

    ref = '{"dataset":"BBU","objects_total":2,"统计":[{"类别":"BBU安装螺丝","符合性":{"符合":2}}]}'
    other = '{"dataset":"BBU","objects_total":1,"统计":[{"类别":"挡风板","可见性":{"完整":1}}]}'
    row = {"metadata": {"domain": "BBU", "irrelevant": False, "summary_ref": ref}, "mission": "bbu_install"}
    right, wrong = f"<DOMAIN=BBU>, <TASK=SUMMARY>\n{ref}", f"<DOMAIN=BBU>, <TASK=SUMMARY>\n{other}"
    figures = summary_figures([row, row], [[wrong, right], [wrong, wrong]])
    assert figures["val/summary.content_f1"] == pytest.approx(1 / 4)  # the mean over all four answers
    assert figures["val/summary.content_f1_best"] == pytest.approx(1 / 2)  # image 1's best is right, image 2's not
    assert "val/summary.content_f1_best" not in summary_figures([row, row], [right, wrong])


def test_summary_figures_average_each_reward_over_the_images_it_speaks_about():
    """An irrelevant image has no content: the content F1 of a validation set is its summaries' F1, not that times
    the share of relevant images; a BBU-only reward is averaged over the BBU images, an RRU-only one over the RRU
    images; format and header judge every image."""
    from bbuqc.rewards import get_reward
    from bbuqc.training.validation import summary_figures

    bbu_ref = '{"dataset":"BBU","objects_total":2,"统计":[{"类别":"BBU安装螺丝","符合性":{"符合":2}}]}'
    bbu_half = ('{"dataset":"BBU","objects_total":3,"统计":[{"类别":"BBU安装螺丝","符合性":{"符合":2}},'
                '{"类别":"挡风板","可见性":{"完整":1}}]}')  # the reference's facts and an extra object
    rru_ref = '{"dataset":"RRU","objects_total":1,"统计":[{"类别":"RRU设备"}],"分组统计":{"1":1}}'
    rows = [
        {"metadata": {"domain": "BBU", "irrelevant": False, "summary_ref": bbu_ref}, "mission": "bbu_install"},
        {"metadata": {"domain": "RRU", "irrelevant": False, "summary_ref": rru_ref}, "mission": "rru_install"},
        {"metadata": {"domain": "BBU", "irrelevant": True, "summary_ref": "无关图片"}, "mission": "bbu_install"},
        {"metadata": {"domain": "RRU", "irrelevant": True, "summary_ref": "无关图片"}, "mission": "rru_install"},
    ]
    answers = [f"<DOMAIN=BBU>, <TASK=SUMMARY>\n{bbu_half}", f"<DOMAIN=RRU>, <TASK=SUMMARY>\n{rru_ref}",
               "无关图片", "<DOMAIN=RRU>, <TASK=SUMMARY>\n{}"]
    figures = summary_figures(rows, answers)
    f1 = get_reward("summary.content_f1")(answers, metadata=[r["metadata"] for r in rows])
    assert 0.0 < f1[0] < 1.0 and f1[1:] == [1.0, 0.0, 0.0]
    assert figures["val/summary.content_f1"] == pytest.approx((f1[0] + 1.0) / 2)  # the two summaries, not four
    assert figures["val/summary.content_eq"] == pytest.approx(1 / 2)
    assert figures["val/summary.group_stats_presence"] == pytest.approx(1.0)  # the one RRU summary has it
    assert figures["val/summary.text_bbu"] == pytest.approx(0.0)  # the one BBU summary (no label text)
    assert figures["val/summary.format"] == pytest.approx(3 / 4)  # the fourth answers an irrelevant image in JSON
    assert figures["val/summary.header"] == pytest.approx((1 + 1 + 0 - 1) / 4)
    only_irrelevant = summary_figures(rows[2:], answers[2:])
    assert "val/summary.content_f1" not in only_irrelevant and "val/summary.format" in only_irrelevant
    assert "val/summary.text_bbu" not in summary_figures(rows[1:], answers[1:])  # no BBU image left


def test_a_plugin_reward_is_averaged_over_the_scope_it_declares(restored_rewards):
    """A plug-in summary reward with a scope gets its validation mean over those rows; one without, over every row."""
    from bbuqc.rewards import row_reward
    from bbuqc.training.validation import summary_figures

    @row_reward("summary.test_says_irrelevant", 0.0, 1.0, scope=lambda row: not row["metadata"]["irrelevant"])
    def scoped(completion, metadata, **_):
        return 1.0 if completion == "无关图片" else 0.0

    @row_reward("summary.test_says_irrelevant_everywhere", 0.0, 1.0)
    def unscoped(completion, metadata, **_):
        return 1.0 if completion == "无关图片" else 0.0

    rows = [{"metadata": {"domain": "BBU", "irrelevant": irrelevant, "summary_ref": "无关图片"}, "mission": "bbu_install"}
            for irrelevant in (False, False, True, True)]
    figures = summary_figures(rows, ["无关图片", "{}", "无关图片", "无关图片"])
    assert figures["val/summary.test_says_irrelevant"] == pytest.approx(1 / 2)  # rows 1 and 2 only
    assert figures["val/summary.test_says_irrelevant_everywhere"] == pytest.approx(3 / 4)
