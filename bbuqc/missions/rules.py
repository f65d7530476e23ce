"""The mission pass/fail rules: each mission's focus points applied to a group's summaries.

``judge_group`` is what a group's label *should* be given its Stage-A summaries.
The synthetic world labels its groups with it, and verdict rows built from real
Stage-A files use it to write a reason that agrees with the human label
(``bbuqc.data.rows``). One ``Check`` per focus point of each built-in mission (conf/mission/, read by
``catalogue.py``), keyed by its id; a mission of a user's own has none (docs/data.md, "Missions"), so it
cannot use the synthetic world. docs/data.md, "Label rules", states them in words.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from natsort import natsorted

from bbuqc.protocol import summary_object, summary_problem
from bbuqc.rewards.summary.facts import extract_facts

from .catalogue import MISSIONS, Mission, resolve_mission


@dataclass(frozen=True)
class Check:
    """One focus point: ``category`` must be seen, and none of ``bad`` values may be."""

    category: str
    bad: tuple[tuple[str, str, str], ...] = ()  # (attribute, bad value, how it is described)
    ok_text: str = ""
    need_attr: str | None = None  # present only with a value of this attribute (e.g. 文本: readable)
    what: str = ""  # how the missing item is named; default: the category

    @property
    def name(self) -> str:
        return self.what or self.category


#: What kind of failure a failed focus point is (``assess_group``): a required item no image shows,
#: or a value a summary states (不符合, 无套管, 散乱, …). The verdict model errs differently on them
#: (docs/evaluate.md, "Error attribution").
MISSING, STATED = "missing", "stated"

_CONFORM = (("符合性", "不符合", "不符合要求"),)
_INSTALLED = (("安装状态", "不合格", "安装不合格"),)

RULES: dict[str, tuple[Check, ...]] = {
    "bbu_install": (Check("BBU设备"), Check("BBU安装螺丝", _CONFORM, "且符合要求")),
    "bbu_ground": (
        Check("机柜处接地螺丝", _CONFORM, "且符合要求"),
        Check("地排处接地螺丝", _CONFORM, "且符合要求"),
        Check("电线", (("捆扎", "散乱", "捆扎散乱"),), "且捆扎整齐"),
    ),
    "bbu_cable": (
        Check("BBU端光纤插头", _CONFORM, "且符合要求"),
        Check("ODF端光纤插头", _CONFORM, "且符合要求"),
        Check(
            "光纤",
            (("保护措施", "无保护", "无保护措施"), ("弯曲半径", "半径不合理", "弯曲半径不合理")),
            "且有保护、弯曲半径合理",
        ),
    ),
    "bbu_wind": (
        Check("BBU设备"),
        Check("挡风板", _CONFORM + (("安装方向", "方向错误", "安装方向错误"),), "且符合要求、安装方向正确"),
    ),
    "rru_install": (Check("RRU设备"), Check("紧固件", _INSTALLED, "且安装合格")),
    "rru_position": (
        Check("紧固件", _INSTALLED, "且安装合格"),
        Check("接地线"),
        Check("标签", need_attr="文本", what="可读的标签"),
    ),
    "rru_cable": (Check("尾纤", (("套管保护", "无套管", "无套管保护"),), "且均有套管保护"),),
}
PER_POINT = {"rru_install", "rru_position"}  # "每个安装点都必须…": checked per install point
assert set(RULES) == set(MISSIONS)  # the built-in missions; catalogue.config_problems relies on it


@dataclass
class _Evidence:
    """What one relevant image's summary shows."""

    key: str  # 图片_i
    categories: set[str]
    values: Counter  # (category, attribute, value) -> count
    points: list[str]  # install points (分组统计 keys, digits)


def _evidence(key: str, summary: str) -> _Evidence | None:
    """None for an irrelevant image or a summary that is not a JSON object."""
    obj = summary_object(summary)
    if obj is None:
        return None
    facts = extract_facts(obj)
    values = Counter({key_[1:]: n for key_, n in {**facts.stats, **facts.texts}.items()})
    categories = set()
    entries = obj.get("统计")
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and str(entry.get("类别") or "").strip():
            categories.add(str(entry["类别"]).strip())
    points = natsorted({group for _, group in facts.groups})
    return _Evidence(key, categories, values, points)


def _refs(images: list[_Evidence]) -> str:
    return "、".join(im.key for im in images)


def _run_check(check: Check, images: list[_Evidence]) -> tuple[str | None, str]:
    """``(None, what is seen)`` when the focus point holds, else ``(MISSING | STATED, what is wrong)``."""
    def present(im: _Evidence) -> bool:
        if check.need_attr is None:
            return check.category in im.categories
        return any(k[0] == check.category and k[1] == check.need_attr for k in im.values)

    seen = [im for im in images if present(im)]
    if not seen:
        return MISSING, f"未检测到{check.name}"
    problems = []
    for attr, bad, problem in check.bad:
        hits = [im for im in images if im.values.get((check.category, attr, bad), 0) > 0]
        if hits:
            problems.append(f"{_refs(hits)}中{check.category}{problem}")
    if problems:
        return STATED, "；".join(problems)
    return None, f"{_refs(seen)}检测到{check.name}{check.ok_text}"


def _run_checks(checks: tuple[Check, ...], images: list[_Evidence]) -> tuple[list[str], list[str], set[str]]:
    """The messages of the focus points that hold, of those that fail, and the failures' kinds."""
    oks, fails, kinds = [], [], set()
    for check in checks:
        kind, message = _run_check(check, images)
        (oks if kind is None else fails).append(message)
        if kind is not None:
            kinds.add(kind)
    return oks, fails, kinds


def _judge_wind(images: list[_Evidence]) -> tuple[list[str], list[str], set[str]]:
    device, shield = RULES["bbu_wind"]
    kind, message = _run_check(device, images)
    if kind is not None:
        return [], [message], {kind}
    need = [im for im in images if im.values.get(("BBU设备", "挡风板需求", "空间充足需安装"), 0) > 0]
    exempt = [im for im in images if im.values.get(("BBU设备", "挡风板需求", "免装"), 0) > 0]
    if need:
        kind2, message2 = _run_check(shield, images)
        note = f"{_refs(need)}显示空间充足需安装挡风板"
        return ([message, note, message2], [], set()) if kind2 is None else ([], [note + "，" + message2], {kind2})
    if exempt:
        return [message, f"{_refs(exempt)}显示挡风板免装"], [], set()
    return [], ["未能判断是否需要安装挡风板"], {MISSING}  # no image shows whether the shield is needed


def judge_group(mission: Mission | str, summaries: dict[str, str] | list[str]) -> tuple[str, str]:
    """``(label, reason)`` of a group: ``pass`` only when every focus point holds.

    ``summaries``: ``{图片_i: summary}`` (natural key order) or a list in image
    order; a summary is a JSON line (with or without its header) or 无关图片.
    Irrelevant or unparseable summaries are no evidence. The reason cites the
    images (``图片_k``) that show each item or each problem.
    """
    label, reason, _ = assess_group(mission, summaries)
    return label, reason


def assess_group(mission: Mission | str,
                 summaries: dict[str, str] | list[str]) -> tuple[str, str, frozenset[str]]:
    """``judge_group``'s ``(label, reason)`` and the kinds of its failures (``MISSING``, ``STATED``;
    empty for a pass)."""
    m = resolve_mission(mission)
    if isinstance(summaries, dict):
        items = [(k, summaries[k]) for k in natsorted(summaries)]
    else:
        items = [(f"图片_{i}", s) for i, s in enumerate(summaries, 1)]
    images = [ev for ev in (_evidence(k, s) for k, s in items) if ev is not None]
    if m.id == "bbu_wind":
        oks, fails, kinds = _judge_wind(images)
    elif m.id in PER_POINT and any(im.points for im in images):
        oks, fails, kinds = [], [], set()
        points: dict[str, list[_Evidence]] = {}
        for im in images:
            for point in im.points or [f"?{im.key}"]:
                points.setdefault(point, []).append(im)
        for point in natsorted(points):
            label = f"未编号({point[1:]})" if point.startswith("?") else point
            point_oks, point_fails, point_kinds = _run_checks(RULES[m.id], points[point])
            for out, messages in ((oks, point_oks), (fails, point_fails)):
                if messages:
                    out.append(f"安装点{label}：" + "，".join(messages))
            kinds |= point_kinds
    else:
        oks, fails, kinds = _run_checks(RULES[m.id], images)
    if fails:
        return "fail", "；".join(fails), frozenset(kinds)
    return "pass", "；".join(oks) + "，满足全部检查要点", frozenset()


def rules_label(mission: Mission | str | None, summaries: dict[str, str] | None) -> tuple[str | None, str]:
    """``judge_group(mission, summaries)`` where the rules can judge the group, else ``(None, why not)``.

    They cannot when the mission is not in the catalogue or has no rules, when there are no
    summaries, or when a summary is neither 无关图片 nor a JSON object: ``judge_group`` takes such a
    summary as no evidence, but whether its image showed an item is not known, so no label is
    claimed for the group (Stage-B's error attribution reports it as ``unknown``).
    """
    label, reason, _ = rules_assessment(mission, summaries)
    return label, reason


def rules_assessment(mission: Mission | str | None,
                     summaries: dict[str, str] | None) -> tuple[str | None, str, frozenset[str]]:
    """``rules_label`` with the failures' kinds (``assess_group``; empty when the rules cannot judge)."""
    try:
        m = resolve_mission(mission) if mission is not None else None
    except KeyError:
        m = None
    if m is None:
        return None, f"unknown mission {mission!r}", frozenset()
    if m.id not in RULES:
        return None, f"mission {m.id} has no rules", frozenset()
    if not isinstance(summaries, dict) or not summaries:
        return None, "no summaries", frozenset()
    for key in natsorted(summaries):
        problem = summary_problem(summaries[key])
        if problem is not None:
            return None, f"{key}: summary is {problem}", frozenset()
    return assess_group(m, summaries)
