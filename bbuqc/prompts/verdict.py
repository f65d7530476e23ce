"""Stage-B (verdict task) prompts; the answer format itself is ``bbuqc.protocol``.

The model reads one group's Stage-A summaries (``图片_i: summary`` lines, in image
order) and answers in exactly two lines (REWARDS.md, "Stage-B verdict rewards")::

    不通过
    理由: 图片_2中BBU安装螺丝不符合要求
"""

from __future__ import annotations

import json

from natsort import natsorted

from bbuqc.missions import Mission
from bbuqc.protocol import FAIL, PASS, THIRD_STATE_WORDS, VERDICTS, parse_verdict
from bbuqc.protocol import verdict_answer as verdict_solution  # the reference answer of a row

from .summary import resolve_mission


def verdict_system_prompt(mission: Mission | str) -> str:
    m = resolve_mission(mission)
    return (
        f"你是通信基站施工质检的审核员，负责审核任务“{m.name}”（领域：{m.domain}）。\n"
        "你会看到一组现场图片的文字摘要（每张图片一行，无关图片记为“无关图片”），"
        "请依据该任务的检查要点判断这一组图片是否通过审核。\n"
        "只输出两行：第一行为“通过”或“不通过”（不得输出其他判断词），第二行以“理由: ”开头，"
        "简要说明依据并引用图片编号（如图片_1）。"
    )


def _natural_items(per_image: dict[str, str]) -> list[tuple[str, str]]:
    return [(key, per_image[key]) for key in natsorted(per_image)]


def verdict_user_prompt(mission: Mission | str, per_image: dict[str, str] | str) -> str:
    """Mission, numbered focus points, the output format, then ``图片_i: summary`` lines."""
    m = resolve_mission(mission)
    if isinstance(per_image, str):  # a row's `summaries` column is JSON text
        per_image = json.loads(per_image)
    lines = [f"任务：{m.name}", "检查要点："]
    lines += [f"{i}. {point}" for i, point in enumerate(m.focus, 1)]
    lines += [
        f"判定规则：{m.decision}",  # the mission file's `decision`
        "输出格式（严格两行）：",
        f"第一行：{PASS} 或 {FAIL}",
        "第二行：理由: <引用图片编号的简要理由>",
        f"图片摘要（共{len(per_image)}张）：",
    ]
    lines += [f"{key}: {summary}" for key, summary in _natural_items(per_image)]
    return "\n".join(lines)


def verdict_messages(mission: Mission | str, per_image: dict[str, str] | str) -> list[dict]:
    m = resolve_mission(mission)
    return [
        {"role": "system", "content": verdict_system_prompt(m)},
        {"role": "user", "content": verdict_user_prompt(m, per_image)},
    ]


__all__ = [
    "FAIL",
    "PASS",
    "THIRD_STATE_WORDS",
    "VERDICTS",
    "parse_verdict",
    "verdict_messages",
    "verdict_solution",
    "verdict_system_prompt",
    "verdict_user_prompt",
]
