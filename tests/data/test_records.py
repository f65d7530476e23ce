import json
import re

import pytest

from bbuqc.data.records import (
    LABEL_DIRS,
    VERDICT_OF_LABEL,
    StageAFormatError,
    StageARecord,
    align_summaries,
    decode_summaries,
    iter_stage_a_jsonl,
    read_stage_a_jsonl,
    record_from_dict,
    record_to_line,
    write_stage_a_jsonl,
)
from bbuqc.protocol import postprocess_summary

SUMMARY = '{"dataset":"BBU","objects_total":1,"统计":[{"类别":"BBU设备"}]}'


def good() -> dict:
    return {
        "group_id": "QC-TEMP-20241206-0015502",
        "mission": "挡风板安装检查",
        "label": "fail",
        "images": ["QC-TEMP-20241206-0015502_4348975.jpeg", "b.jpg"],
        "per_image": {"图片_1": SUMMARY, "图片_2": "无关图片"},
    }


def test_constants():
    assert LABEL_DIRS == {"审核通过": "pass", "审核不通过": "fail"}
    assert VERDICT_OF_LABEL == {"pass": "通过", "fail": "不通过"}


def test_round_trip():
    rec = record_from_dict(good())
    assert rec == StageARecord(**good())
    assert rec.verdict == "不通过"
    line = record_to_line(rec)
    assert "\n" not in line and "挡风板" in line  # ensure_ascii=False
    assert list(json.loads(line)) == ["group_id", "mission", "label", "images", "per_image"]
    assert line == json.dumps(good(), ensure_ascii=False, separators=(",", ":"))
    assert record_from_dict(json.loads(line)) == rec


def _mutate(path, value):
    obj = good()
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("group_id",), KeyError, "group_id"),
        (("group_id",), "", "group_id"),
        (("group_id",), 7, "group_id"),
        (("mission",), None, "mission"),
        (("mission",), KeyError, "mission"),
        (("label",), "通过", "label"),
        (("label",), KeyError, "label"),
        (("images",), [], "images"),
        (("images",), "a.jpg", "images"),
        (("images",), ["a.jpg", 3], "images[1]"),
        (("images",), ["dir/a.jpg", "b.jpg"], "images[0]"),
        (("per_image",), [SUMMARY, "无关图片"], "per_image"),
        (("per_image",), {"图片_1": SUMMARY}, "per_image"),
        (("per_image",), {"图片_2": "无关图片", "图片_1": SUMMARY}, "per_image"),
        (("per_image",), {"图片_0": SUMMARY, "图片_1": "无关图片"}, "per_image"),
        (("per_image", "图片_2"), "", "per_image.图片_2"),
        (("per_image", "图片_2"), "   ", "per_image.图片_2"),
        (("per_image", "图片_1"), {"统计": []}, "per_image.图片_1"),
        (("extra",), 1, "extra"),
    ],
)
def test_validation_errors_name_the_field(path, value, field):
    with pytest.raises(StageAFormatError) as info:
        record_from_dict(_mutate(path, value))
    message = str(info.value)
    assert message.startswith(field + ":")
    assert "\n" not in message


def test_not_an_object():
    with pytest.raises(StageAFormatError, match="^record:"):
        record_from_dict([1, 2])
    assert issubclass(StageAFormatError, ValueError)


def test_read_write_file(tmp_path):
    path = tmp_path / "a.jsonl"
    recs = [record_from_dict(good()), record_from_dict({**good(), "label": "pass"})]
    write_stage_a_jsonl(path, recs)
    assert read_stage_a_jsonl(path) == recs
    assert [n for n, _ in iter_stage_a_jsonl(path)] == [1, 2]


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    line = record_to_line(record_from_dict(good()))
    other = record_to_line(record_from_dict({**good(), "label": "pass"}))
    path.write_text(f"\n{line}\n  \n{other}\n", encoding="utf-8")
    assert [n for n, _ in iter_stage_a_jsonl(path)] == [2, 4]


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    line = record_to_line(record_from_dict(good()))
    other = record_to_line(record_from_dict({**good(), "label": "pass"}))
    bad = json.dumps({**good(), "label": "maybe"}, ensure_ascii=False)
    path.write_text(f"{line}\n{other}\n{bad}\n", encoding="utf-8")
    with pytest.raises(StageAFormatError, match=rf"^{re.escape(str(path))}:3: label:"):
        read_stage_a_jsonl(path)
    path.write_text(f"{line}\n{{not json\n", encoding="utf-8")
    with pytest.raises(StageAFormatError, match=rf"^{re.escape(str(path))}:2: invalid JSON"):
        read_stage_a_jsonl(path)


def test_truncated_last_line(tmp_path):
    path = tmp_path / "cut.jsonl"
    line = record_to_line(record_from_dict(good()))
    path.write_text(f"{line}\n{line[:40]}", encoding="utf-8")
    with pytest.raises(StageAFormatError, match=rf"^{re.escape(str(path))}:2: invalid JSON \(truncated last line\?\)"):
        read_stage_a_jsonl(path)
    assert read_stage_a_jsonl(path, allow_truncated_tail=True) == [record_from_dict(good())]
    # a broken line in the middle is never forgiven
    path.write_text(f"{line[:40]}\n{line}\n", encoding="utf-8")
    with pytest.raises(StageAFormatError, match=rf"^{re.escape(str(path))}:1:"):
        read_stage_a_jsonl(path, allow_truncated_tail=True)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Stage-A file not found: .*nope.jsonl"):
        read_stage_a_jsonl(tmp_path / "nope.jsonl")


def test_record_to_line_validates():
    rec = record_from_dict(good())
    rec.per_image = {"图片_1": SUMMARY}
    with pytest.raises(StageAFormatError, match="^per_image"):
        record_to_line(rec)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (f"<DOMAIN=BBU>, <TASK=SUMMARY>\n{SUMMARY}", SUMMARY),
        (f"<DOMAIN=BBU>, <TASK=SUMMARY>\n{SUMMARY}<|im_end|>", SUMMARY),
        (f"  <DOMAIN=RRU>,<TASK=SUMMARY>  \n\n  {SUMMARY}  \n", SUMMARY),
        (SUMMARY, SUMMARY),
        ("无关图片", "无关图片"),
        ("无关图片<|im_end|>", "无关图片"),
        ("无关图片。这是一张文档照片", "无关图片"),
        ("<DOMAIN=BBU>, <TASK=SUMMARY>\n无关图片", "无关图片"),
        (f"<DOMAIN=BBU>, <TASK=SUMMARY>\n```json\n{SUMMARY}\n```", SUMMARY),
        (f"<DOMAIN=BBU>, <TASK=SUMMARY>\n说明\n{SUMMARY}", SUMMARY),
        ("<DOMAIN=BBU>, <TASK=SUMMARY>\n{broken", "{broken"),
        ("<DOMAIN=BBU>, <TASK=SUMMARY>", ""),
        ("<|im_end|>", ""),
        ("", ""),
        ("just text", "just text"),
    ],
)
def test_postprocess_summary(raw, expected):
    assert postprocess_summary(raw) == expected


def test_align_summaries():
    assert align_summaries(["a.jpg", "b.jpg"], [" x ", "无关图片"]) == {"图片_1": "x", "图片_2": "无关图片"}
    with pytest.raises(StageAFormatError, match="2 summaries for 3 images"):
        align_summaries(["a", "b", "c"], ["x", "y"])
    with pytest.raises(StageAFormatError, match="图片_2: empty summary"):
        align_summaries(["a", "b"], ["x", ""])
    with pytest.raises(StageAFormatError, match="at least one image"):
        align_summaries([], [])


def test_decode_summaries_accepts_dict_and_json_text():
    d = {"图片_1": SUMMARY, "图片_2": "无关图片"}
    assert decode_summaries(d) == d
    assert decode_summaries(json.dumps(d, ensure_ascii=False)) == d
    assert decode_summaries({"图片_1": "x", "图片_2": None}) == {"图片_1": "x"}  # Arrow struct padding
    assert decode_summaries({"图片_1": {"统计": []}}) == {"图片_1": '{"统计": []}'}
    assert decode_summaries("not json") is None
    assert decode_summaries("[1]") is None
    assert decode_summaries(None) is None
