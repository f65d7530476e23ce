"""Mission catalogue: the single source of truth for mission ids, names and focus points.

The Hydra ``mission`` group is registered from this table (see ``bbuqc.config.store``),
so prompts, synthetic data, Stage-A and the config tree can never disagree. The
pass/fail rules that apply these focus points are beside it, in ``rules.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mission:
    id: str
    name: str  # the Chinese mission name, also the Stage-A folder name
    domain: str  # BBU or RRU: decides the summary header and taxonomy
    focus: tuple[str, ...]  # 检查要点, in the order reviewers read them


MISSIONS: dict[str, Mission] = {
    m.id: m
    for m in (
        Mission(
            "bbu_install",
            "BBU安装方式检查（正装）",
            "BBU",
            ("必须检测到BBU设备", "必须检测到BBU安装螺丝", "BBU安装螺丝必须符合要求"),
        ),
        Mission(
            "bbu_ground",
            "BBU接地线检查",
            "BBU",
            (
                "必须检测到机柜处接地螺丝且符合要求",
                "必须检测到地排处接地螺丝且符合要求",
                "必须检测到电线且捆扎整齐",
            ),
        ),
        Mission(
            "bbu_cable",
            "BBU线缆布放要求",
            "BBU",
            (
                "必须检测到BBU端光纤插头且符合要求",
                "必须检测到ODF端光纤插头且符合要求",
                "必须检测到光纤，且有保护措施、弯曲半径合理",
            ),
        ),
        Mission(
            "bbu_wind",
            "挡风板安装检查",
            "BBU",
            (
                "必须检测到BBU设备",
                "判断是否需要安装挡风板（免装/空间充足需安装）",
                "需要安装时，挡风板必须已安装且符合要求、安装方向正确",
            ),
        ),
        Mission(
            "rru_install",
            "RRU安装检查",
            "RRU",
            ("每个安装点都必须检测到RRU设备", "每个安装点都必须检测到符合要求的紧固件"),
        ),
        Mission(
            "rru_position",
            "RRU位置检查",
            "RRU",
            ("每个安装点都必须检测到符合要求的紧固件", "每个安装点都必须检测到接地线", "每个安装点都必须有可读的标签"),
        ),
        Mission(
            "rru_cable",
            "RRU线缆",
            "RRU",
            ("必须检测到尾纤", "尾纤必须有套管保护，任何无套管的尾纤都不通过"),
        ),
    )
}

MISSIONS_BY_NAME: dict[str, Mission] = {m.name: m for m in MISSIONS.values()}


def get_mission(mission_id: str) -> Mission:
    try:
        return MISSIONS[mission_id]
    except KeyError:
        raise KeyError(f"unknown mission {mission_id!r}; known: {', '.join(MISSIONS)}") from None


def resolve_mission(mission: Mission | str) -> Mission:
    """A Mission from a Mission-like object (id, name, domain, focus), an id or a Chinese name."""
    if isinstance(mission, str):
        if mission in MISSIONS:
            return MISSIONS[mission]
        if mission in MISSIONS_BY_NAME:
            return MISSIONS_BY_NAME[mission]
        raise KeyError(f"unknown mission {mission!r}; known: {', '.join(MISSIONS)}")
    if isinstance(mission, Mission):
        return mission
    # a Hydra MissionConfig node or anything with the same fields
    return Mission(str(mission.id), str(mission.name), str(mission.domain), tuple(mission.focus))
