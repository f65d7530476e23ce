from pathlib import Path

import pytest

from bbuqc.data.discovery import Group, discover_groups, group_id_of
from bbuqc.missions import get_mission

MISSION = get_mission("bbu_wind")


def touch(path: Path, data: bytes = b"\xff\xd8fake") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def root(tmp_path):
    base = tmp_path / MISSION.name
    ok, bad = base / "审核通过", base / "审核不通过"
    # QC-prefixed images, mixed extension case, natural order img2 < img10
    g = ok / "folder-a"
    touch(g / "QC-TEMP-20241206-0015502_10.jpeg")
    touch(g / "QC-TEMP-20241206-0015502_2.JPG")
    touch(g / "QC-TEMP-20241206-0015502_1.png")
    touch(g / "notes.txt")
    # resubmission: same id under the other label
    touch(bad / "folder-b" / "QC-TEMP-20241206-0015502_7.jpg")
    # no QC prefix: the folder name is the group id
    touch(bad / "site 9" / "img10.jpg")
    touch(bad / "site 9" / "img2.jpg")
    touch(bad / "site 9" / "IMG1.PNG")
    # empty group, a group with only non-images, an unknown label folder, stray files
    (ok / "empty").mkdir()
    touch(ok / "docs-only" / "readme.pdf")
    touch(base / "待审核" / "g" / "x.jpg")
    touch(base / "stray.jpg")
    touch(ok / "loose.jpg")
    touch(g / "sub" / "deep.jpg")
    return tmp_path


def test_groups_ids_labels_and_order(root):
    groups, _ = discover_groups(root, MISSION)
    assert [(g.group_id, g.label) for g in groups] == [
        ("QC-TEMP-20241206-0015502", "fail"),
        ("QC-TEMP-20241206-0015502", "pass"),
        ("site 9", "fail"),
    ]
    assert all(isinstance(g, Group) for g in groups)
    resub_fail, resub_pass, site = groups
    assert resub_pass.image_names == [
        "QC-TEMP-20241206-0015502_1.png",
        "QC-TEMP-20241206-0015502_2.JPG",
        "QC-TEMP-20241206-0015502_10.jpeg",
    ]
    assert resub_fail.dir.name == "folder-b"
    assert site.image_names == ["IMG1.PNG", "img2.jpg", "img10.jpg"]
    assert all(p.is_absolute() or p.exists() for g in groups for p in g.images)


def test_warnings_one_per_problem(root):
    _, warnings = discover_groups(root, MISSION)
    text = "\n".join(warnings)
    assert len(warnings) == 8, text
    assert sum("non-image file" in w for w in warnings) == 2  # notes.txt, readme.pdf
    assert any("notes.txt" in w for w in warnings)
    assert sum("empty group" in w for w in warnings) == 2  # empty/, docs-only/
    assert any("unknown label folder" in w and "待审核" in w for w in warnings)
    assert any("stray.jpg" in w for w in warnings)
    assert any("loose.jpg" in w for w in warnings)
    assert any("sub-folder" in w and "sub" in w for w in warnings)


def test_mission_by_id_or_name(root):
    a, _ = discover_groups(root, "bbu_wind")
    b, _ = discover_groups(root, MISSION.name)
    assert a == b


def test_missing_mission_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "RRU线缆")):
        discover_groups(tmp_path, "rru_cable")
    with pytest.raises(FileNotFoundError):
        discover_groups(tmp_path / "nope", "rru_cable")


def test_duplicate_pair_under_one_label_is_skipped_with_a_warning(tmp_path):
    ok = tmp_path / MISSION.name / "审核通过"
    touch(ok / "a" / "QC-X-20240101-1_1.jpg")
    touch(ok / "b" / "QC-X-20240101-1_2.jpg")
    groups, warnings = discover_groups(tmp_path, MISSION)
    assert [g.dir.name for g in groups] == ["a"]
    assert len(warnings) == 1 and "already found" in warnings[0]


def test_group_id_of():
    assert group_id_of("QC-TEMP-20241206-0015502_4348975.jpeg", "f") == "QC-TEMP-20241206-0015502"
    assert group_id_of("QC-ab-20241206-7.jpg", "f") == "QC-ab-20241206-7"
    assert group_id_of("QC-TEMP-2024120-1_1.jpg", "f") == "f"  # 7 digits
    assert group_id_of("xQC-TEMP-20241206-1_1.jpg", "f") == "f"
    assert group_id_of("QC-T3-20241206-1.jpg", "f") == "f"


def test_group_id_comes_from_the_first_image_in_natural_order(tmp_path):
    bad = tmp_path / MISSION.name / "审核不通过"
    touch(bad / "g" / "QC-A-20240101-5_x.jpg")
    touch(bad / "g" / "10.jpg")
    touch(bad / "g" / "9.jpg")
    touch(bad / "h" / "QC-A-20240101-6_10.jpg")
    touch(bad / "h" / "QC-A-20240101-6_9.jpg")
    touch(bad / "h" / "zz.jpg")
    groups, _ = discover_groups(tmp_path, MISSION)
    assert [(g.group_id, g.image_names[0]) for g in groups] == [
        ("QC-A-20240101-6", "QC-A-20240101-6_9.jpg"),
        ("g", "9.jpg"),  # the first image has no prefix: the folder name wins
    ]
