"""Planning a synthetic group: its scenes (objects per image) and their reference summaries.

A group is planned to pass or to fail one focus point of its mission; the label is
then decided by the mission rules (``bbuqc.missions.rules.judge_group``) from the
summaries written here, never chosen directly. Pure Python: every choice comes from
the ``random.Random`` handed in.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bbuqc.missions import Mission
from bbuqc.prompts.summary import TAXONOMY
from bbuqc.protocol import IRRELEVANT

from .shift import canonical_shift

MAX_IMAGES = 4  # images per group, an irrelevant one included (unshifted; shift more_images: 5-8)
MAX_PER_IMAGE = 11  # objects per image: the 4 x 3 grid, less the RRU install-point plate's cell
LAYOUT_MAX_PER_IMAGE = {"BBU": 6, "RRU": 5}  # shift layout: 3 x 2 cells (RRU: one left for 站点距离)


@dataclass
class Obj:
    category: str
    attrs: dict[str, str]  # one value per attribute; labels: {"文本": text} or {"可读性": "不可读"}


@dataclass
class Scene:
    """One image: its objects, or an irrelevant picture (``irrelevant`` set, no objects)."""

    domain: str
    objects: list[Obj] = field(default_factory=list)
    point: str | None = None  # RRU install point
    irrelevant: str | None = None  # document | drawing
    layout: str = "grid"  # grid: 4 x 3 cells of 32 px | large: 3 x 2 larger cells (shift layout; draw.py)


BRANDS = ("华为", "中兴", "爱立信")
BBU_TEXTS = ("BBU-1", "BBU-2", "ODF-3-12", "GND-1", "NR-01", "5G-BBU")
RRU_TEXTS = ("RRU-A1", "RRU-B2", "RRU-C3", "ANT-1", "SEC-2")
# shift unseen_labels: each text above replaced by its counterpart here (texts no unshifted world uses)
UNSEEN_TEXTS = dict(
    zip(
        BBU_TEXTS + RRU_TEXTS,
        ("BBU-7", "BBU-9", "ODF-5-08", "GND-4", "NR-23", "4G-BBU") + ("RRU-D4", "RRU-E5", "RRU-F6", "ANT-7", "SEC-9"),
        strict=True,
    )
)


def summary_of(scene: Scene) -> str:
    """The reference summary line of a scene (REWARDS.md summary format, without the header)."""
    if scene.irrelevant:
        return IRRELEVANT
    taxonomy = TAXONOMY[scene.domain]
    counts: dict[str, dict[str, Counter]] = {}
    for obj in scene.objects:
        per_attr = counts.setdefault(obj.category, {})
        for attr, value in obj.attrs.items():
            per_attr.setdefault(attr, Counter())[value] += 1
    entries = []
    for category, attrs in taxonomy.items():
        if category not in counts:
            continue
        entry: dict = {"类别": category}
        for attr in attrs:
            if attr in counts[category]:
                entry[attr] = dict(sorted(counts[category][attr].items()))
        entries.append(entry)
    out: dict = {"dataset": scene.domain, "objects_total": len(scene.objects), "统计": entries}
    if scene.domain == "BBU":
        notes = _notes(scene.objects)
        if notes:
            out["备注"] = notes
    elif scene.point is not None:
        out["分组统计"] = {scene.point: len(scene.objects)}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _notes(objects: list[Obj]) -> list[str]:
    notes = []
    for obj in objects:
        if obj.attrs.get("可见性") == "部分":
            notes.append(f"{obj.category}部分被遮挡")
        if obj.attrs.get("可读性") == "不可读":
            notes.append("存在无法识别的标签")
    return list(dict.fromkeys(notes))


# ---- planning: the objects of one group ---------------------------------------------


def _vis(rng: random.Random) -> str:
    return "部分" if rng.random() < 0.2 else "完整"


def _many(category: str, attr: str, good: str, bad_value: str, n: int, bad: int = 0) -> list[Obj]:
    return [Obj(category, {attr: bad_value if i < bad else good}) for i in range(n)]


def _conform(category: str, n: int, bad: int = 0) -> list[Obj]:
    return _many(category, "符合性", "符合", "不符合", n, bad)


def _conforming(rng: random.Random, mode: str, categories: tuple[tuple[str, str], ...]) -> list[Obj]:
    """1-2 items of each ``(key, category)`` with a 符合性: mode ``no_<key>`` leaves the category out,
    ``bad_<key>`` makes at least one of its items 不符合."""
    objs = []
    for key, category in categories:
        if mode != f"no_{key}":
            n = _n(rng)
            objs += _conform(category, n, bad=rng.randint(1, n) if mode == f"bad_{key}" else 0)
    return objs


def _fasteners(n: int, bad: int = 0) -> list[Obj]:
    return _many("紧固件", "安装状态", "合格", "不合格", n, bad)


def _label(rng: random.Random, domain: str, readable: bool = True) -> Obj:
    if not readable:
        return Obj("标签", {"可读性": "不可读"})
    return Obj("标签", {"文本": rng.choice(BBU_TEXTS if domain == "BBU" else RRU_TEXTS)})


def _bbu_device(rng: random.Random, need: str | None = None) -> Obj:
    need = need or rng.choice(("免装", "空间充足需安装"))
    return Obj("BBU设备", {"品牌": rng.choice(BRANDS), "可见性": _vis(rng), "挡风板需求": need})


def _fibre(rng: random.Random, protected: bool = True, radius_ok: bool = True) -> Obj:
    return Obj(
        "光纤",
        {
            "可见性": _vis(rng),
            "保护措施": "有保护" if protected else "无保护",
            "弯曲半径": "半径合理" if radius_ok else "半径不合理",
        },
    )


def _wire(rng: random.Random, neat: bool = True) -> Obj:
    return Obj("电线", {"可见性": _vis(rng), "捆扎": "整齐" if neat else "散乱"})


def _rru(rng: random.Random) -> Obj:
    return Obj("RRU设备", {"品牌": rng.choice(BRANDS), "可见性": _vis(rng)})


def _ground_wire(rng: random.Random) -> Obj:
    return Obj("接地线", {"可见性": _vis(rng), "标签": rng.choice(("有标签", "无标签"))})


def _tail(rng: random.Random, sleeved: bool = True) -> Obj:
    return Obj("尾纤", {"标签": rng.choice(("有标签", "无标签")), "套管保护": "有套管" if sleeved else "无套管"})


def _n(rng: random.Random, lo: int = 1, hi: int = 2) -> int:
    return rng.randint(lo, hi)


def _plan_bbu(m: Mission, rng: random.Random, fail: bool) -> tuple[list[Obj], str]:
    """Objects of a BBU group, and the planned failure ('' for a passing plan)."""
    mode = ""
    if m.id == "bbu_install":
        mode = rng.choice(("no_device", "no_screw", "bad_screw")) if fail else ""
        n = _n(rng, 2, 4)
        objs = [] if mode == "no_device" else [_bbu_device(rng)]
        if mode != "no_screw":
            objs += _conform("BBU安装螺丝", n, bad=rng.randint(1, n) if mode == "bad_screw" else 0)
    elif m.id == "bbu_ground":
        modes = ("no_cabinet", "bad_cabinet", "no_bar", "bad_bar", "no_wire", "messy_wire")
        mode = rng.choice(modes) if fail else ""
        objs = _conforming(rng, mode, (("cabinet", "机柜处接地螺丝"), ("bar", "地排处接地螺丝")))
        if mode != "no_wire":
            n = _n(rng)
            objs += [_wire(rng, neat=not (mode == "messy_wire" and i == 0)) for i in range(n)]
    elif m.id == "bbu_cable":
        modes = ("no_bbu_plug", "bad_bbu_plug", "no_odf_plug", "bad_odf_plug", "no_fibre", "bare_fibre", "bent_fibre")
        mode = rng.choice(modes) if fail else ""
        objs = _conforming(rng, mode, (("bbu_plug", "BBU端光纤插头"), ("odf_plug", "ODF端光纤插头")))
        if mode != "no_fibre":
            n = _n(rng)
            objs += [
                _fibre(rng, protected=not (mode == "bare_fibre" and i == 0), radius_ok=not (mode == "bent_fibre" and i == 0))
                for i in range(n)
            ]
    elif m.id == "bbu_wind":
        mode = rng.choice(("no_device", "no_shield", "shield_reversed", "shield_bad")) if fail else ""
        need = "空间充足需安装" if fail or rng.random() < 0.5 else "免装"
        objs = [] if mode == "no_device" else [_bbu_device(rng, need)]
        if need == "空间充足需安装" and mode != "no_shield":
            objs.append(
                Obj(
                    "挡风板",
                    {
                        "可见性": _vis(rng),
                        "符合性": "不符合" if mode == "shield_bad" else "符合",
                        "安装方向": "方向错误" if mode == "shield_reversed" else "方向正确",
                    },
                )
            )
    else:
        raise KeyError(m.id)
    extras = _extras(m, rng)
    for _ in range(rng.randint(0, 2)):
        objs.append(rng.choice(extras)())
    return objs, mode


def _extras(m: Mission, rng: random.Random) -> list[Callable[[], Obj]]:
    """The mission's distractors: objects that no focus point of the mission reads."""
    return {
        "bbu_install": [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _wire(rng, rng.random() < 0.5)],
        "bbu_ground": [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _bbu_device(rng)],
        "bbu_cable": [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _wire(rng, rng.random() < 0.5)],
        "bbu_wind": [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _conform("BBU安装螺丝", 1)[0]],
        "rru_install": [lambda: _label(rng, "RRU"), lambda: _ground_wire(rng), lambda: _tail(rng, rng.random() < 0.5)],
        "rru_position": [lambda: _rru(rng), lambda: _tail(rng, rng.random() < 0.5)],
        "rru_cable": [lambda: _rru(rng), lambda: _fasteners(1, bad=rng.randint(0, 1))[0], lambda: _label(rng, "RRU")],
    }[m.id]


def _plan_rru(m: Mission, rng: random.Random, fail: bool) -> tuple[dict[str, list[Obj]], str]:
    """Objects per install point of an RRU group, and the planned failure."""
    n_points = 1 if m.id == "rru_cable" else rng.randint(1, 2)
    points: dict[str, list[Obj]] = {}
    mode = ""
    if m.id == "rru_install":
        mode = rng.choice(("no_rru", "no_fastener", "bad_fastener")) if fail else ""
    elif m.id == "rru_position":
        mode = rng.choice(("no_fastener", "bad_fastener", "no_ground", "no_label", "unreadable_label")) if fail else ""
    elif m.id == "rru_cable":
        mode = rng.choice(("no_tail", "bare_tail")) if fail else ""
    else:
        raise KeyError(m.id)
    extras = _extras(m, rng)
    failing = str(rng.randint(1, n_points))  # the point that breaks a per-point rule
    for p in range(1, n_points + 1):
        point = str(p)
        broken = mode if point == failing else ""
        objs: list[Obj] = []
        if m.id == "rru_install":
            if broken != "no_rru":
                objs.append(_rru(rng))
            if broken != "no_fastener":
                n = _n(rng)
                objs += _fasteners(n, bad=rng.randint(1, n) if broken == "bad_fastener" else 0)
        elif m.id == "rru_position":
            if broken != "no_fastener":
                n = _n(rng)
                objs += _fasteners(n, bad=rng.randint(1, n) if broken == "bad_fastener" else 0)
            if broken != "no_ground":
                objs.append(_ground_wire(rng))
            if broken != "no_label":
                objs.append(_label(rng, "RRU", readable=broken != "unreadable_label"))
        else:  # rru_cable
            if broken != "no_tail":
                n = _n(rng, 1, 3)
                objs += [_tail(rng, sleeved=not (broken == "bare_tail" and i == 0)) for i in range(n)]
        for _ in range(rng.randint(0, 2)):
            objs.append(rng.choice(extras)())
        if not objs:
            objs.append(_label(rng, "RRU"))
        points[point] = objs
    return points, mode


def _spread(objs: list[Obj], n_images: int, rng: random.Random, cap: int = MAX_PER_IMAGE) -> list[list[Obj]]:
    """Objects over ``n_images`` non-empty images, at most ``cap`` objects per image (more images
    when they do not fit: never with the unshifted cap, whose groups have fewer objects)."""
    objs = list(objs)
    rng.shuffle(objs)
    n_images = max(1, min(n_images, len(objs)), math.ceil(len(objs) / cap))
    images: list[list[Obj]] = [[] for _ in range(n_images)]
    for i, obj in enumerate(objs):
        target = i if i < n_images else rng.randrange(n_images)
        while len(images[target]) >= cap:
            target = (target + 1) % n_images
        images[target].append(obj)
    return images


def _pad(objs: list[Obj], n: int, m: Mission, rng: random.Random) -> None:
    """Add the mission's distractors to ``objs`` until there are ``n`` (shift more_images: one object
    for each image at least; the distractors leave the planned label as it is)."""
    extras = _extras(m, rng)
    while len(objs) < n:
        objs.append(rng.choice(extras)())


def plan_group(m: Mission, rng: random.Random, fail: bool, shift: Iterable[str] = ()) -> tuple[list[Scene], str]:
    """The scenes (images, in order) of one group planned to pass or fail, and the failure mode.

    ``shift``: names from ``shift.SHIFTS`` (docs/data.md, "Shifted worlds"); none plans as always,
    drawing the same numbers from ``rng``.
    """
    shift = canonical_shift(shift)
    more = "more_images" in shift
    cap = LAYOUT_MAX_PER_IMAGE[m.domain] if "layout" in shift else MAX_PER_IMAGE
    if m.domain == "BBU":
        objs, mode = _plan_bbu(m, rng, fail)
        if not objs:
            objs = [_label(rng, "BBU")]
        if more:
            n_images = rng.randint(5, 7)
            _pad(objs, n_images, m, rng)
        else:
            n_images = rng.randint(1, 3)
        scenes = [Scene("BBU", part) for part in _spread(objs, n_images, rng, cap)]
    else:
        points, mode = _plan_rru(m, rng, fail)
        per_point = 3 - len(points) if len(points) < 3 else 1
        if more:  # 5-7 relevant images over the install points, as evenly as they go
            total = rng.randint(5, 7)
            counts = [total // len(points) + (i < total % len(points)) for i in range(len(points))]
        scenes = []
        for i, (point, objs) in enumerate(points.items()):
            if more:
                n_images = counts[i]
                _pad(objs, n_images, m, rng)
            else:
                n_images = rng.randint(1, per_point)
            for part in _spread(objs, n_images, rng, cap):
                scenes.append(Scene("RRU", part, point=point))
        if rng.random() < 0.3:
            rng.choice(scenes).objects.append(Obj("站点距离", {"站点距离": str(rng.randint(5, 60))}))
    if "more_irrelevant" in shift:
        n_irrelevant = rng.randint(1, 2)
    else:
        n_irrelevant = int((len(scenes) < MAX_IMAGES or more) and rng.random() < 0.35)
    for _ in range(n_irrelevant):
        scenes.insert(rng.randint(0, len(scenes)), Scene(m.domain, irrelevant=rng.choice(("document", "drawing"))))
    for scene in scenes:
        if "layout" in shift and not scene.irrelevant:
            scene.layout = "large"
        if "unseen_labels" in shift:
            for obj in scene.objects:
                if "文本" in obj.attrs:
                    obj.attrs["文本"] = UNSEEN_TEXTS[obj.attrs["文本"]]
    return scenes, mode
