"""The streaming writer: complete lines, fsync, resume, repair of an interrupted last line."""

from __future__ import annotations

import os

import pytest
from stage_a_support import RECORDS

from bbuqc.data.records import iter_stage_a_jsonl, record_to_line
from bbuqc.errors import InputError
from bbuqc.stage_a.writer import OutputError, StageAWriter, complete_length, read_output

REFERENCE = "".join(record_to_line(r) + "\n" for r in RECORDS).encode("utf-8")


def test_writes_one_complete_line_per_record_and_fsyncs(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "out.jsonl"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    with StageAWriter(path) as writer:
        assert writer.done == set()
        for i, r in enumerate(RECORDS, 1):
            writer.write(r)
            data = path.read_bytes()  # what `tail -f` sees: only complete lines, right after each write
            assert data.endswith(b"\n") and data.count(b"\n") == i
            assert len(synced) == i
    assert path.read_bytes() == REFERENCE
    assert [r for _, r in iter_stage_a_jsonl(path)] == RECORDS


def test_resume_reports_done_keys(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(REFERENCE)
    with StageAWriter(path) as writer:
        assert writer.done == {("pass", "QC-TEMP-20241206-0000001"), ("fail", "QC-TEMP-20241206-0000002"),
                               ("pass", "QC-TEMP-20241206-0000002"), ("pass", "QC-TEMP-20241206-0000003")}
        assert writer.scan.repaired_bytes == 0
    assert path.read_bytes() == REFERENCE


@pytest.mark.parametrize("cut", sorted({1, 10, len(REFERENCE) // 2, len(REFERENCE) - 1, len(REFERENCE)}
                                        | {REFERENCE.index(b"\n") + k for k in (0, 1, 2)}))
def test_truncated_tail_is_cut_to_the_last_newline_then_completed(tmp_path, cut):
    """A kill mid-write leaves a prefix of the uninterrupted file: resume ends byte-identical."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(REFERENCE[:cut])
    keep = complete_length(REFERENCE[:cut])
    with StageAWriter(path) as writer:
        assert path.read_bytes() == REFERENCE[:keep]  # repaired on open, before anything is appended
        assert writer.scan.repaired_bytes == cut - keep
        done = writer.done
        for r in RECORDS:
            if (r.label, r.group_id) not in done:
                writer.write(r)
    assert path.read_bytes() == REFERENCE


def test_corrupt_complete_line_is_an_error_and_the_file_is_left_alone(tmp_path):
    path = tmp_path / "out.jsonl"
    lines = REFERENCE.split(b"\n")
    bad = b"\n".join([lines[0], b'{"group_id": "x"', *lines[1:]])
    path.write_bytes(bad)
    with pytest.raises(OutputError, match=r"out\.jsonl:2: invalid JSON"):
        StageAWriter(path).open()
    assert path.read_bytes() == bad
    path.write_bytes(REFERENCE + REFERENCE.split(b"\n")[0] + b"\n")
    with pytest.raises(OutputError, match=r":5: group QC-TEMP-20241206-0000001 \(pass\) already on line 1"):
        StageAWriter(path).open()
    path.write_bytes(b'{"group_id": "x"}\n')
    with pytest.raises(OutputError, match=r":1: not a Stage-A record: mission: missing field"):
        read_output(path)
    assert issubclass(OutputError, InputError)  # one `error:` line at the entry point, recorded in a sweep


def test_second_writer_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    with StageAWriter(path):
        with pytest.raises(OutputError, match="another run is writing this file"):
            StageAWriter(path).open()
    with StageAWriter(path) as again:  # released on close
        assert again.done == set()


def test_sort_restores_discovery_order_atomically_and_keeps_the_lock(tmp_path):
    path = tmp_path / "out.jsonl"
    shuffled = [RECORDS[2], RECORDS[0], RECORDS[3], RECORDS[1]]
    order = [(r.label, r.group_id) for r in RECORDS]
    with StageAWriter(path) as writer:
        for r in shuffled:
            writer.write(r)
        assert writer.sort(order) is True
        assert path.read_bytes() == REFERENCE
        assert writer.sort(order) is False  # already in order: untouched
        with pytest.raises(OutputError, match="another run is writing"):  # the renamed file is locked too
            StageAWriter(path).open()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    # records not in the order (groups no longer in the input) keep their place at the end
    with StageAWriter(path) as writer:
        assert writer.sort(order[1:]) is True
    assert path.read_bytes().split(b"\n")[-2] == record_to_line(RECORDS[0]).encode("utf-8")


def test_a_failed_write_is_one_line_and_keeps_what_was_written(tmp_path, monkeypatch):
    """A full disk at fsync: an InputError naming the file and the cause, the earlier lines intact."""
    import errno

    path = tmp_path / "out.jsonl"
    with StageAWriter(path) as writer:
        writer.write(RECORDS[0])

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(OutputError, match=rf"^{path}: cannot write: No space left on device \(1 records"):
            writer.write(RECORDS[1])
        monkeypatch.undo()
    assert read_output(path)[0] == RECORDS[0]


def test_a_file_where_the_folder_belongs_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=rf"^{blocker / 'out.jsonl'}: cannot open for writing"):
        StageAWriter(blocker / "out.jsonl").open()
