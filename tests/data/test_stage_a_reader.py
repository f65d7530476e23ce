"""One Stage-A reader, one set of messages: verdict training (rows.load_verdict_rows) and
evaluation (stage_b.runner.load_groups) refuse the same bad files with the same line."""

from __future__ import annotations

import re

import pytest

from bbuqc.data.records import StageAFormatError, iter_stage_a_jsonl, record_from_dict, record_to_line
from bbuqc.data.rows import load_verdict_rows
from bbuqc.errors import InputError
from bbuqc.stage_b.runner import load_groups


def line(group_id="QC-TEMP-20241206-0015502", label="fail") -> str:
    return record_to_line(record_from_dict({
        "group_id": group_id, "mission": "挡风板安装检查", "label": label,
        "images": ["a.jpg"], "per_image": {"图片_1": "无关图片"},
    }))


def bad_files(tmp_path):
    good = line()
    cases = {
        "empty": (b"", r": empty file: no Stage-A records$"),
        "blank": (b"\n  \n", r": empty file: no Stage-A records$"),
        "latin1": ((good + "\n").encode() + '{"group_id": "caf\xe9"}\n'.encode("latin-1"),
                   r":2: not UTF-8 text \(byte 0xe9 at column 18\)"),
        "duplicate": (f"{good}\n{line(label='pass')}\n{good}\n".encode(),
                      r":3: group QC-TEMP-20241206-0015502 \(label fail\) already at line 1$"),
        "deep": (f"{good}\n{'[' * 100_000}{']' * 100_000}\n".encode(), r":2: JSON nested too deeply"),
    }
    out = {}
    for name, (data, pattern) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(data)
        out[name] = (path, "^" + re.escape(str(path)) + pattern)
    return out


@pytest.mark.parametrize("name", ["empty", "blank", "latin1", "duplicate", "deep"])
def test_training_and_evaluation_refuse_the_same_way(tmp_path, name):
    path, pattern = bad_files(tmp_path)[name]
    with pytest.raises(StageAFormatError, match=pattern) as training:
        load_verdict_rows([path])
    with pytest.raises(InputError, match=pattern) as evaluation:
        load_groups([path])
    assert str(training.value) == str(evaluation.value)
    assert "\n" not in str(training.value)


def test_the_same_file_twice_is_refused(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(line() + "\n", encoding="utf-8")
    for reader in (load_verdict_rows, load_groups):
        with pytest.raises(InputError, match="the same Stage-A file is given twice"):
            reader([path, tmp_path / "." / "a.jsonl"])


def test_a_resubmission_is_not_a_duplicate_and_a_bom_is_accepted(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(("\ufeff" + line(label="fail") + "\r\n" + line(label="pass") + "\r\n").encode())
    assert [(n, r.label) for n, r in iter_stage_a_jsonl(path)] == [(1, "fail"), (2, "pass")]
    assert len(load_verdict_rows([path])) == len(load_groups([path])) == 2


def test_empty_allowed_where_asked(tmp_path):
    path = tmp_path / "new.jsonl"
    path.write_bytes(b"")
    assert list(iter_stage_a_jsonl(path, allow_empty=True)) == []
