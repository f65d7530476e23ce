"""Your ms-swift data (`data.swift_jsonl`): ms-swift's standard rows train as they are, and a row missing a
column a chosen reward reads is refused in one line, before any model loads, with nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bbuqc.data.rows import RowFileNotFoundError, RowFormatError, prompt_messages, sft_messages
from bbuqc.data.swift_rows import Reader, load_swift_rows, row_problems, swift_dataset
from bbuqc.rewards import REGISTRY, row_reward
from bbuqc.training.data import group_of, split_by_group

REPO = Path(__file__).resolve().parents[2]
SUMMARY_REF = '{"dataset":"BBU","objects_total":1,"统计":[{"类别":"BBU设备","数量":1}],"备注":[]}'
ANSWER = f"<DOMAIN=BBU>, <TASK=SUMMARY>\n{SUMMARY_REF}"


def png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), colour).save(path)
    return path


def summary_row(image: str, **extra) -> dict:
    """An ms-swift row of one image: system, user with its <image> tag, the reference answer."""
    return {
        "messages": [{"role": "system", "content": "你是通信工程质检助手。"},
                     {"role": "user", "content": "<image>请按格式总结这张安装照片。"},
                     {"role": "assistant", "content": ANSWER}],
        "images": [image], **extra,
    }


def verdict_row(label: str | None = "通过", **extra) -> dict:
    """A text row of the verdict task, in ms-swift's format, with bbuqc's label column."""
    row = {"messages": [{"role": "user", "content": "图片_1: 挡风板安装到位。请判断：通过 或 不通过。"},
                        {"role": "assistant", "content": f"{label or '通过'}\n理由: 图片_1挡风板安装到位"}],
           "summaries": '{"图片_1": "挡风板安装到位"}', **extra}
    if label is not None:
        row["group_label"] = label
    return row


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


VERDICT_READERS = [Reader(f"reward {rid}", REGISTRY[rid].spec.reads) for rid in ("verdict.label", "verdict.consistency")]
META = {"domain": "BBU", "irrelevant": False, "summary_ref": SUMMARY_REF}


def test_a_row_missing_a_column_a_reward_reads_is_named_once_with_the_rows_after_it(tmp_path):
    f = write(tmp_path / "train.jsonl", [verdict_row(), verdict_row(None), verdict_row(), verdict_row(None)])
    assert row_problems([f], VERDICT_READERS, multimodal=False) == [
        f"{f}:2: group_label: missing column, which reward verdict.label reads (1 more rows lack it)"]


def test_a_key_inside_an_object_column_is_a_column_of_its_own(tmp_path):
    (tmp_path / "imgs").mkdir()
    png(tmp_path / "imgs" / "a.png")
    meta = {k: v for k, v in META.items() if k != "summary_ref"}
    f = write(tmp_path / "train.jsonl", [summary_row("imgs/a.png", metadata=meta)])
    readers = [Reader("reward summary.format", REGISTRY["summary.format"].spec.reads)]
    assert row_problems([f], readers, multimodal=True) == [
        f"{f}:1: metadata.summary_ref: missing column, which reward summary.format reads"]
    # irrelevant=false is a value, not a missing one
    assert row_problems([write(f, [summary_row("imgs/a.png", metadata=META)])], readers, multimodal=True) == []


def test_a_plugin_reward_reads_the_columns_its_signature_names(tmp_path):
    before = set(REGISTRY)
    try:
        @row_reward("verdict.exact_label", 0.0, 1.0)
        def exact(completion, label, note=None, **_):
            return float(completion.startswith(label))

        assert REGISTRY["verdict.exact_label"].spec.reads == ("label",)  # `note` has a default: optional
        f = write(tmp_path / "train.jsonl", [verdict_row(label="通过"), verdict_row(label="通过", label_="x")])
        reader = Reader("reward verdict.exact_label", REGISTRY["verdict.exact_label"].spec.reads)
        assert row_problems([f], [reader], multimodal=False) == [
            f"{f}:1: label: missing column, which reward verdict.exact_label reads (1 more rows lack it)"]
    finally:
        for rid in set(REGISTRY) - before:
            del REGISTRY[rid]


@pytest.mark.parametrize("row, expected", [
    ([1, 2], "expected a JSON object"),
    ({"images": []}, "messages: missing; expected a list of {role, content} turns"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0]: expected an object with role"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content: expected a string"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages: no user turn"),
    ({"messages": [{"role": "user", "content": "<image><image>x"}], "images": ["a.png"]},
     "messages: 2 <image> tags for 1 images; ms-swift needs one tag per image"),
    ({"messages": [{"role": "user", "content": "x"}], "images": "a.png"}, "images: expected a list of image paths"),
])
def test_a_row_that_is_not_ms_swifts_format_stops_its_file(tmp_path, row, expected):
    f = write(tmp_path / "train.jsonl", [verdict_row(), row, row])
    (line,) = row_problems([f], [], multimodal=True)
    assert line.startswith(f"{f}:2: {expected}"), line


def test_images_need_a_vl_model_and_sft_needs_an_answer(tmp_path):
    f = write(tmp_path / "a.jsonl", [summary_row("a.png")])
    assert row_problems([f], [], multimodal=False) == [
        f"{f}:1: images: the model is text-only (model.multimodal=false); rows with images need a VL model"]
    prompt_only = verdict_row()
    prompt_only["messages"] = prompt_only["messages"][:1]
    g = write(tmp_path / "b.jsonl", [prompt_only])
    assert row_problems([g], [], multimodal=False, answer_for="algo=sft") == [
        f"{g}:1: messages: no reference answer (a last assistant turn, or a solution column), which algo=sft trains on"]
    assert row_problems([write(g, [{**prompt_only, "solution": "通过\n理由: x"}])], [], multimodal=False,
                        answer_for="algo=sft") == []


def test_rows_load_with_their_images_resolved_against_the_file(tmp_path):
    png(tmp_path / "imgs" / "a.png")
    f = write(tmp_path / "train.jsonl", [summary_row("imgs/a.png", metadata=META, solution=ANSWER)])
    (row,) = load_swift_rows([f])
    assert row["images"] == [str((tmp_path / "imgs" / "a.png").resolve())]
    ds = swift_dataset([f])
    assert ds.column_names == ["messages", "images", "metadata", "solution"]
    write(f, [summary_row("imgs/gone.png")])
    with pytest.raises(RowFileNotFoundError, match=rf"^{f}:1: images: file not found: "):
        load_swift_rows([f])
    write(f, [verdict_row(label="通过"), verdict_row(label=1)])
    with pytest.raises(RowFormatError, match=r"a column holds values of different types"):
        swift_dataset([f])


def test_loading_reads_each_file_once_and_stops_at_the_first_problem_in_file_order(tmp_path, monkeypatch):
    """A training run's rows are read once by the load (the check before the run folder reads them once more):
    millions of rows are not parsed twice inside it. A problem of the first file is raised before a malformed
    line of the second is even read."""
    import bbuqc.data.swift_rows as swift_rows

    reads = []
    real = swift_rows.json_lines
    monkeypatch.setattr(swift_rows, "json_lines", lambda path: reads.append(path) or real(path))
    a = write(tmp_path / "a.jsonl", [verdict_row(), verdict_row("不通过")])
    b = write(tmp_path / "b.jsonl", [verdict_row()])
    assert len(load_swift_rows([a, b], readers=VERDICT_READERS, multimodal=False)) == 3
    assert reads == [a, b]
    write(a, [verdict_row(label=None)])  # lacks group_label, which verdict.label reads
    b.write_text("not json\n", encoding="utf-8")
    reads.clear()
    with pytest.raises(RowFormatError, match=rf"^{a}:1: group_label: missing column"):
        load_swift_rows([a, b], readers=VERDICT_READERS, multimodal=False)
    assert reads == [a]


def test_an_ms_swift_answer_is_the_sft_target_and_not_part_of_the_prompt():
    row = verdict_row()
    assert sft_messages(row) == row["messages"]  # kept, not answered twice
    assert prompt_messages(row) == row["messages"][:1]
    bbuqc_row = {"messages": row["messages"][:1], "solution": "通过\n理由: x"}
    assert sft_messages(bbuqc_row)[-1] == {"role": "assistant", "content": "通过\n理由: x"}


def test_ms_swift_rows_without_a_group_are_each_their_own_group(tmp_path):
    rows = [summary_row(str(tmp_path / "imgs" / f"{i}.png")) for i in range(10)]  # one folder, ten groups
    assert len({group_of(r) for r in rows}) == 10
    train, val = split_by_group(rows, 0.2)
    assert len(val) == 2 and len(train) == 8
    assert group_of({**rows[0], "group_id": "g1"}) == group_of({**rows[1], "group_id": "g1"})


def test_train_refuses_the_row_before_the_run_folder_exists(tmp_path):
    f = write(tmp_path / "train.jsonl", [verdict_row(), verdict_row(None)])
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bbuqc.train", "task=verdict", "reward=verdict", "data.source=files",
         f"data.swift_jsonl=[{f}]", f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: {f}:2: group_label: missing column, which reward verdict.label reads"]
    assert not run_dir.exists()
