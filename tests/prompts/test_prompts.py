import pytest

from bbuqc.config.schema import MissionConfig
from bbuqc.missions import MISSIONS, get_mission
from bbuqc.prompts import (
    header,
    parse_verdict,
    resolve_mission,
    summary_messages,
    summary_system_prompt,
    summary_user_prompt,
    verdict_messages,
    verdict_solution,
    verdict_system_prompt,
    verdict_user_prompt,
)
from bbuqc.prompts.summary import TAXONOMY, reference_output


@pytest.mark.parametrize("mission_id", list(MISSIONS))
def test_summary_system_prompt_states_the_contract(mission_id):
    m = get_mission(mission_id)
    text = summary_system_prompt(m)
    assert m.name in text
    assert header(m.domain) in text.splitlines()  # the exact line 1
    assert "无关图片" in text
    for key in ('"dataset"', '"objects_total"', '"统计"', '"类别"'):
        assert key in text
    for category in TAXONOMY[m.domain]:
        assert category in text
    assert "【本任务重点关注】" + "、".join(m.categories) in text.splitlines()  # the mission file's categories
    for point in m.focus:
        assert point in text
    if m.domain == "BBU":
        assert '"备注"：' in text and '"分组统计"：' not in text
    else:
        assert '"分组统计"：' in text and '"备注"：' not in text


def test_summary_prompts_are_mission_dependent():
    assert len({summary_system_prompt(m) for m in MISSIONS}) == len(MISSIONS)
    assert len({summary_user_prompt(m) for m in MISSIONS}) == len(MISSIONS)
    assert len({verdict_system_prompt(m) for m in MISSIONS}) == len(MISSIONS)


def test_header():
    assert header("BBU") == "<DOMAIN=BBU>, <TASK=SUMMARY>"
    assert header("RRU") == "<DOMAIN=RRU>, <TASK=SUMMARY>"


def test_summary_messages_ms_swift_style():
    msgs = summary_messages("bbu_wind")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == summary_system_prompt("bbu_wind")
    assert msgs[1]["content"] == "<image>" + summary_user_prompt("bbu_wind")
    assert summary_messages("bbu_wind", n_images=3)[1]["content"].startswith("<image>" * 3 + "任务")
    with pytest.raises(ValueError):
        summary_messages("bbu_wind", n_images=0)


def test_reference_output():
    assert reference_output("BBU", '{"a":1}') == '<DOMAIN=BBU>, <TASK=SUMMARY>\n{"a":1}'
    assert reference_output("RRU", "无关图片") == "无关图片"
    assert reference_output(None, "无关图片") == "无关图片"
    with pytest.raises(ValueError):
        reference_output(None, "{}")


def test_resolve_mission_accepts_id_name_and_config_node():
    m = get_mission("rru_cable")
    assert resolve_mission("rru_cable") is m
    assert resolve_mission("RRU线缆") is m
    node = MissionConfig(id=m.id, name=m.name, domain=m.domain, focus=list(m.focus), categories=list(m.categories),
                         decision=m.decision)
    assert resolve_mission(node) == m
    assert summary_system_prompt(node) == summary_system_prompt(m)
    with pytest.raises(KeyError, match="unknown mission"):
        resolve_mission("nope")


def test_verdict_user_prompt_lists_focus_format_and_images_in_natural_order():
    m = get_mission("bbu_install")
    per_image = {f"图片_{i}": f"s{i}" for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9)}
    text = verdict_user_prompt(m, per_image)
    lines = text.splitlines()
    assert m.name in lines[0]
    for i, point in enumerate(m.focus, 1):
        assert f"{i}. {point}" in lines
    assert "缺少关键要素即不通过" in text
    assert any(line.startswith("第一行") and "通过" in line and "不通过" in line for line in lines)
    assert any(line.startswith("第二行") and "理由:" in line for line in lines)
    image_lines = [line for line in lines if line.startswith("图片_")]
    assert image_lines == [f"图片_{i}: s{i}" for i in range(1, 11)]
    # the image lines come last, after the instructions
    assert lines[-10:] == image_lines
    # a JSON string (the dataset column) gives the same prompt
    import json

    assert verdict_user_prompt(m, json.dumps(per_image, ensure_ascii=False)) == text


def test_verdict_messages():
    msgs = verdict_messages("rru_position", {"图片_1": "无关图片"})
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "RRU位置检查" in msgs[0]["content"]
    assert msgs[1]["content"].endswith("图片_1: 无关图片")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("通过\n理由: 图片_1检测到BBU设备", ("通过", "图片_1检测到BBU设备")),
        ("不通过\n理由：图片_2中螺丝不符合要求", ("不通过", "图片_2中螺丝不符合要求")),  # full-width colon
        ("不通过\n理由:缺少接地线", ("不通过", "缺少接地线")),
        ("通过\n理由: ok  \n\n  \t", ("通过", "ok")),  # trailing whitespace
        ("  通过  \n  理由: ok", ("通过", "ok")),  # lines are stripped
        ("通过\n理由: ok<|im_end|>", ("通过", "ok")),  # special tokens
        ("通过\r\n理由: ok", ("通过", "ok")),
        ("通过\n\n理由: ok", (None, None)),  # blank middle line: 3 lines
        ("\n通过\n理由: ok", (None, None)),  # leading blank line
        ("通过\n理由: ok\n多余", (None, None)),
        ("通过", (None, None)),
        ("通过\n理由:", (None, None)),
        ("通过\n理由:   ", (None, None)),
        ("通过\n原因: ok", (None, None)),
        ("通过。\n理由: ok", (None, None)),
        ("需复核\n理由: 证据不足", (None, None)),
        ("证据不足\n理由: x", (None, None)),
        ("待定\n理由: x", (None, None)),
        ("无法判断\n理由: x", (None, None)),
        ("通过/不通过\n理由: x", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
        (["通过\n理由: x"], (None, None)),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def test_verdict_solution_round_trips_through_parse_verdict():
    text = verdict_solution("不通过", "图片_1中\n紧固件 安装不合格")
    assert text == "不通过\n理由: 图片_1中 紧固件 安装不合格"
    assert parse_verdict(text) == ("不通过", "图片_1中 紧固件 安装不合格")
    with pytest.raises(ValueError):
        verdict_solution("需复核", "x")
    with pytest.raises(ValueError):
        verdict_solution("通过", "  ")
