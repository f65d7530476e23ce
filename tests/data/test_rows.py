import json
import re

import pytest
from PIL import Image

from bbuqc.data.records import StageAFormatError, decode_summaries, read_stage_a_jsonl, record_from_dict, record_to_line
from bbuqc.data.rows import (
    RowFormatError,
    load_summary_rows,
    sft_messages,
    summary_dataset,
    summary_row,
    verdict_dataset,
    verdict_row,
)
from bbuqc.data.synth import generate
from bbuqc.missions import MISSIONS, get_mission
from bbuqc.missions.rules import judge_group
from bbuqc.prompts import parse_verdict, summary_messages, verdict_messages

SUMMARY = '{"dataset":"BBU","objects_total":1,"统计":[{"类别":"BBU设备"}]}'


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("rows") / "world", seed=0, groups_per_mission=4)


def test_summary_row(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    row = summary_row("bbu_install", image, SUMMARY)
    assert set(row) == {"messages", "images", "metadata", "solution", "mission"}
    assert row["messages"] == summary_messages("bbu_install")
    assert row["messages"][1]["content"].startswith("<image>")
    assert row["images"] == [str(image.resolve())]
    assert row["metadata"] == {"domain": "BBU", "irrelevant": False, "summary_ref": SUMMARY}
    assert row["solution"] == "<DOMAIN=BBU>, <TASK=SUMMARY>\n" + SUMMARY
    assert row["mission"] == "bbu_install"
    irrelevant = summary_row("rru_cable", image, "无关图片")
    assert irrelevant["metadata"] == {"domain": "RRU", "irrelevant": True, "summary_ref": "无关图片"}
    assert irrelevant["solution"] == "无关图片"


def test_sft_messages():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "solution": "通过\n理由: x"}
    assert sft_messages(row)[-1] == {"role": "assistant", "content": "通过\n理由: x"}
    assert len(row["messages"]) == 2  # the row itself is untouched


def _record(**kw):
    base = {
        "group_id": "QC-A-20240101-1",
        "mission": get_mission("bbu_install").name,
        "label": "fail",
        "images": [f"{i}.jpg" for i in range(1, 12)],
        "per_image": {f"图片_{i}": "无关图片" if i % 2 else SUMMARY for i in range(1, 12)},
    }
    base.update(kw)
    return record_from_dict(base)


def test_verdict_row():
    rec = _record()
    row = verdict_row(rec)
    assert set(row) == {"messages", "group_label", "summaries", "solution", "mission", "group_id"}
    assert row["messages"] == verdict_messages("bbu_install", rec.per_image)
    assert row["group_label"] == "不通过"
    assert row["mission"] == "bbu_install" and row["group_id"] == rec.group_id
    assert isinstance(row["summaries"], str) and decode_summaries(row["summaries"]) == rec.per_image
    user = row["messages"][1]["content"]
    positions = [user.index(f"\n图片_{i}: ") for i in range(1, 12)]
    assert positions == sorted(positions)  # 图片_2 before 图片_10
    for point in get_mission("bbu_install").focus:
        assert point in user
    verdict, reason = parse_verdict(row["solution"])
    assert verdict == "不通过"
    assert reason == judge_group("bbu_install", rec.per_image)[1]  # the rule agrees: its reason


def test_verdict_row_reason_when_the_rule_disagrees():
    rec = _record(label="pass")  # no screws: the rule says fail, the reviewer said pass
    verdict, reason = parse_verdict(verdict_row(rec)["solution"])
    assert verdict == "通过" and reason.startswith("图片_2、图片_4")  # the relevant images only
    assert "图片_1、" not in reason
    assert parse_verdict(verdict_row(rec, reason="人工复核通过")["solution"]) == ("通过", "人工复核通过")


def test_verdict_row_unknown_mission_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    good = record_to_line(_record())
    bad = record_to_line(_record(mission="不存在的任务", group_id="QC-A-20240101-2"))
    path.write_text(f"{good}\n{bad}\n", encoding="utf-8")
    with pytest.raises(StageAFormatError, match=rf"^{re.escape(str(path))}:2: mission: unknown mission name"):
        verdict_dataset([path])
    with pytest.raises(StageAFormatError, match="^mission: unknown"):
        verdict_row(_record(mission="不存在的任务"))


def test_verdict_dataset_reports_malformed_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(record_to_line(_record()) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(StageAFormatError, match=rf"^{re.escape(str(path))}:2: invalid JSON"):
        verdict_dataset([path])
    with pytest.raises(FileNotFoundError):
        verdict_dataset([tmp_path / "missing.jsonl"])


def test_verdict_dataset_from_many_files(world):
    files = [world.stage_a_files[m] for m in ("bbu_install", "rru_cable")]
    ds = verdict_dataset(files)
    records = [r for f in files for r in read_stage_a_jsonl(f)]
    assert len(ds) == len(records) == 8
    assert ds["group_id"] == [r.group_id for r in records]
    assert ds["group_label"] == [r.verdict for r in records]
    assert set(ds["mission"]) == {"bbu_install", "rru_cable"}
    assert decode_summaries(ds[0]["summaries"]) == records[0].per_image
    assert ds[0]["messages"][0]["role"] == "system"
    assert len(verdict_dataset(files, max_rows=3)) == 3
    assert set(verdict_dataset(files, mission="rru_cable")["mission"]) == {"rru_cable"}
    assert len(verdict_dataset(str(files[0]))) == 4  # a single path works too


def test_summary_dataset_from_world(world):
    ds = summary_dataset(world.summary_rows)
    assert len(ds) == world.totals["images"]
    assert set(ds.column_names) == {"messages", "images", "metadata", "solution", "mission"}
    assert set(ds["mission"]) == set(MISSIONS)
    row = ds[0]
    assert row["messages"][1]["content"].startswith("<image>")
    assert set(row["metadata"]) == {"domain", "irrelevant", "summary_ref"}
    assert any(ds["metadata"][i]["irrelevant"] for i in range(len(ds)))
    one = summary_dataset(world.summary_rows, mission="rru_position", max_rows=2)
    assert len(one) == 2 and set(one["mission"]) == {"rru_position"}
    assert sft_messages(one[0])[-1]["content"] == one[0]["solution"]


def test_summary_rows_relative_paths_and_errors(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.jpg")
    row = summary_row("bbu_wind", tmp_path / "img" / "a.jpg", SUMMARY)
    row["images"] = ["img/a.jpg"]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_summary_rows(path)[0]["images"] == [str((tmp_path / "img" / "a.jpg").resolve())]
    assert len(summary_dataset([summary_row("bbu_wind", tmp_path / "img" / "a.jpg", SUMMARY)])) == 1

    row["images"] = ["img/missing.jpg"]
    path.write_text("\n" + json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(path))}:2: images: file not found"):
        load_summary_rows(path)
    del row["metadata"]
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"{re.escape(str(path))}:1: metadata: missing field"):
        load_summary_rows(path)
    path.write_text("{bad\n", encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"{re.escape(str(path))}:1: invalid JSON"):
        load_summary_rows(path)
    with pytest.raises(FileNotFoundError):
        load_summary_rows(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no summary rows"):
        summary_dataset([])


def test_datasets_is_not_imported_by_the_light_modules():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, bbuqc.data.rows, bbuqc.data.records, bbuqc.data.discovery, bbuqc.data.synth, bbuqc.prompts;"
        "bad = [m for m in ('datasets', 'PIL', 'torch', 'pyarrow') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unreadable_image_in_summary_rows_names_file_line_and_image(tmp_path):
    """A corrupt image stops the rows before any model loads (it used to crash ms-swift mid-run
    with a PIL error about a BytesIO)."""
    good, broken = tmp_path / "good.jpg", tmp_path / "broken.jpg"
    Image.new("RGB", (16, 16)).save(good)
    broken.write_bytes(b"\xff\xd8garbage")
    rows = [summary_row("bbu_wind", good, SUMMARY), summary_row("bbu_wind", broken, SUMMARY)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(RowFormatError, match=rf"^{re.escape(str(path))}:2: image {re.escape(str(broken))}: "
                                             r"cannot be read \(.+\)$"):
        load_summary_rows(path)
    with pytest.raises(RowFormatError, match=r"^row 1: image .*broken\.jpg: cannot be read"):
        summary_dataset(rows)
