"""The synthetic world: small drawn scenes, their reference summaries, labelled groups.

No real photographs ship with the project, so this module draws one (DESIGN.md
§5, "Synthetic data"; layout and rules in docs/data.md)::

    <out>/images/<mission name>/<审核通过|审核不通过>/<group>/<image>.jpg
    <out>/stage_a/<mission id>.jsonl     perfect Stage-A (per_image = reference summaries)
    <out>/summary_rows.jsonl             summary-task GRPO rows (one per image)
    <out>/verdict_rows.jsonl             verdict-task GRPO rows (one per group)
    <out>/manifest.json                  seed, sizes, counts; written last

Everything is a function of the seed: one ``random.Random`` stream per
mission, PIL drawing, JPEGs at a fixed quality, no timestamps. A world is
built in a temporary sibling folder and renamed into place, so an interrupted
``generate`` never leaves a half world behind.

Group labels are never chosen directly: a scene is planned to pass or to fail
one focus point, its reference summaries are written, and ``judge_group``
(the mission's focus points applied to those summaries) decides the label.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from natsort import natsorted

from bbuqc.missions import MISSIONS, Mission
from bbuqc.prompts.summary import IRRELEVANT, TAXONOMY, resolve_mission
from bbuqc.rewards.summary.facts import extract_facts

from .discovery import group_sort_key
from .records import LABEL_DIRS, StageARecord, align_summaries, postprocess_summary, record_to_line

GENERATOR_VERSION = 2  # 2: group numbers offset by the seed
IMAGE_SIZE = (128, 96)  # 4 x 3 cells of 32 x 32 pixels, one object per cell
JPEG_QUALITY = 85
DATE = "20260101"
MANIFEST = "manifest.json"
DIR_OF_LABEL = {label: name for name, label in LABEL_DIRS.items()}
MAX_IMAGES = 4
WORLD_ENTRIES = ("images", "stage_a", "summary_rows.jsonl", "verdict_rows.jsonl", MANIFEST)

# --------------------------------------------------------------------------------------
# The label rules: each mission's focus points applied to a group's summaries.
# --------------------------------------------------------------------------------------


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
assert set(RULES) == set(MISSIONS)


@dataclass
class _Evidence:
    """What one relevant image's summary shows."""

    key: str  # 图片_i
    categories: set[str]
    values: Counter  # (category, attribute, value) -> count
    points: list[str]  # install points (分组统计 keys, digits)


def _evidence(key: str, summary: str) -> _Evidence | None:
    """None for an irrelevant image or a summary that is not a JSON object."""
    line = postprocess_summary(summary)
    if not line or line == IRRELEVANT:
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
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


def _run_check(check: Check, images: list[_Evidence]) -> tuple[bool, str]:
    def present(im: _Evidence) -> bool:
        if check.need_attr is None:
            return check.category in im.categories
        return any(k[0] == check.category and k[1] == check.need_attr for k in im.values)

    seen = [im for im in images if present(im)]
    if not seen:
        return False, f"未检测到{check.name}"
    problems = []
    for attr, bad, problem in check.bad:
        hits = [im for im in images if im.values.get((check.category, attr, bad), 0) > 0]
        if hits:
            problems.append(f"{_refs(hits)}中{check.category}{problem}")
    if problems:
        return False, "；".join(problems)
    return True, f"{_refs(seen)}检测到{check.name}{check.ok_text}"


def _run_checks(checks: tuple[Check, ...], images: list[_Evidence]) -> tuple[list[str], list[str]]:
    oks, fails = [], []
    for check in checks:
        ok, message = _run_check(check, images)
        (oks if ok else fails).append(message)
    return oks, fails


def _judge_wind(images: list[_Evidence]) -> tuple[list[str], list[str]]:
    device, shield = RULES["bbu_wind"]
    ok, message = _run_check(device, images)
    if not ok:
        return [], [message]
    need = [im for im in images if im.values.get(("BBU设备", "挡风板需求", "空间充足需安装"), 0) > 0]
    exempt = [im for im in images if im.values.get(("BBU设备", "挡风板需求", "免装"), 0) > 0]
    if need:
        ok2, message2 = _run_check(shield, images)
        note = f"{_refs(need)}显示空间充足需安装挡风板"
        return ([message, note, message2], []) if ok2 else ([], [note + "，" + message2])
    if exempt:
        return [message, f"{_refs(exempt)}显示挡风板免装"], []
    return [], ["未能判断是否需要安装挡风板"]


def judge_group(mission: Mission | str, summaries: dict[str, str] | list[str]) -> tuple[str, str]:
    """``(label, reason)`` of a group: ``pass`` only when every focus point holds.

    ``summaries``: ``{图片_i: summary}`` (natural key order) or a list in image
    order; a summary is a JSON line (with or without its header) or 无关图片.
    Irrelevant or unparseable summaries are no evidence. The reason cites the
    images (``图片_k``) that show each item or each problem.
    """
    m = resolve_mission(mission)
    if isinstance(summaries, dict):
        items = [(k, summaries[k]) for k in natsorted(summaries)]
    else:
        items = [(f"图片_{i}", s) for i, s in enumerate(summaries, 1)]
    images = [ev for ev in (_evidence(k, s) for k, s in items) if ev is not None]
    if m.id == "bbu_wind":
        oks, fails = _judge_wind(images)
    elif m.id in PER_POINT and any(im.points for im in images):
        oks, fails = [], []
        points: dict[str, list[_Evidence]] = {}
        for im in images:
            for point in im.points or [f"?{im.key}"]:
                points.setdefault(point, []).append(im)
        for point in natsorted(points):
            label = f"未编号({point[1:]})" if point.startswith("?") else point
            for out, messages in zip((oks, fails), _run_checks(RULES[m.id], points[point])):
                if messages:
                    out.append(f"安装点{label}：" + "，".join(messages))
    else:
        oks, fails = _run_checks(RULES[m.id], images)
    if fails:
        return "fail", "；".join(fails)
    return "pass", "；".join(oks) + "，满足全部检查要点"


# --------------------------------------------------------------------------------------
# Scenes: objects, the reference summary of an image, and its drawing.
# --------------------------------------------------------------------------------------


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


BRANDS = ("华为", "中兴", "爱立信")
BBU_TEXTS = ("BBU-1", "BBU-2", "ODF-3-12", "GND-1", "NR-01", "5G-BBU")
RRU_TEXTS = ("RRU-A1", "RRU-B2", "RRU-C3", "ANT-1", "SEC-2")


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
        extras = [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _wire(rng, rng.random() < 0.5)]
    elif m.id == "bbu_ground":
        modes = ("no_cabinet", "bad_cabinet", "no_bar", "bad_bar", "no_wire", "messy_wire")
        mode = rng.choice(modes) if fail else ""
        objs = []
        for key, category in (("cabinet", "机柜处接地螺丝"), ("bar", "地排处接地螺丝")):
            if mode != f"no_{key}":
                n = _n(rng)
                objs += _conform(category, n, bad=rng.randint(1, n) if mode == f"bad_{key}" else 0)
        if mode != "no_wire":
            n = _n(rng)
            objs += [_wire(rng, neat=not (mode == "messy_wire" and i == 0)) for i in range(n)]
        extras = [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _bbu_device(rng)]
    elif m.id == "bbu_cable":
        modes = ("no_bbu_plug", "bad_bbu_plug", "no_odf_plug", "bad_odf_plug", "no_fibre", "bare_fibre", "bent_fibre")
        mode = rng.choice(modes) if fail else ""
        objs = []
        for key, category in (("bbu_plug", "BBU端光纤插头"), ("odf_plug", "ODF端光纤插头")):
            if mode != f"no_{key}":
                n = _n(rng)
                objs += _conform(category, n, bad=rng.randint(1, n) if mode == f"bad_{key}" else 0)
        if mode != "no_fibre":
            n = _n(rng)
            objs += [
                _fibre(rng, protected=not (mode == "bare_fibre" and i == 0), radius_ok=not (mode == "bent_fibre" and i == 0))
                for i in range(n)
            ]
        extras = [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _wire(rng, rng.random() < 0.5)]
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
        extras = [lambda: _label(rng, "BBU", rng.random() < 0.8), lambda: _conform("BBU安装螺丝", 1)[0]]
    else:
        raise KeyError(m.id)
    for _ in range(rng.randint(0, 2)):
        objs.append(rng.choice(extras)())
    return objs, mode


def _plan_rru(m: Mission, rng: random.Random, fail: bool) -> tuple[dict[str, list[Obj]], str]:
    """Objects per install point of an RRU group, and the planned failure."""
    n_points = 1 if m.id == "rru_cable" else rng.randint(1, 2)
    points: dict[str, list[Obj]] = {}
    mode = ""
    if m.id == "rru_install":
        mode = rng.choice(("no_rru", "no_fastener", "bad_fastener")) if fail else ""
        extras = [lambda: _label(rng, "RRU"), lambda: _ground_wire(rng), lambda: _tail(rng, rng.random() < 0.5)]
    elif m.id == "rru_position":
        mode = rng.choice(("no_fastener", "bad_fastener", "no_ground", "no_label", "unreadable_label")) if fail else ""
        extras = [lambda: _rru(rng), lambda: _tail(rng, rng.random() < 0.5)]
    elif m.id == "rru_cable":
        mode = rng.choice(("no_tail", "bare_tail")) if fail else ""
        extras = [lambda: _rru(rng), lambda: _fasteners(1, bad=rng.randint(0, 1))[0], lambda: _label(rng, "RRU")]
    else:
        raise KeyError(m.id)
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


def _spread(objs: list[Obj], n_images: int, rng: random.Random) -> list[list[Obj]]:
    """Objects over ``n_images`` non-empty images (at most 11 objects per image)."""
    objs = list(objs)
    rng.shuffle(objs)
    n_images = max(1, min(n_images, len(objs)))
    images: list[list[Obj]] = [[] for _ in range(n_images)]
    for i, obj in enumerate(objs):
        target = i if i < n_images else rng.randrange(n_images)
        while len(images[target]) >= 11:
            target = (target + 1) % n_images
        images[target].append(obj)
    return images


def plan_group(m: Mission, rng: random.Random, fail: bool) -> tuple[list[Scene], str]:
    """The scenes (images, in order) of one group planned to pass or fail, and the failure mode."""
    if m.domain == "BBU":
        objs, mode = _plan_bbu(m, rng, fail)
        if not objs:
            objs = [_label(rng, "BBU")]
        scenes = [Scene("BBU", part) for part in _spread(objs, rng.randint(1, 3), rng)]
    else:
        points, mode = _plan_rru(m, rng, fail)
        per_point = 3 - len(points) if len(points) < 3 else 1
        scenes = []
        for point, objs in points.items():
            for part in _spread(objs, rng.randint(1, per_point), rng):
                scenes.append(Scene("RRU", part, point=point))
        if rng.random() < 0.3:
            rng.choice(scenes).objects.append(Obj("站点距离", {"站点距离": str(rng.randint(5, 60))}))
    if len(scenes) < MAX_IMAGES and rng.random() < 0.35:
        scenes.insert(rng.randint(0, len(scenes)), Scene(m.domain, irrelevant=rng.choice(("document", "drawing"))))
    return scenes, mode


# ---- drawing ------------------------------------------------------------------------

_BRAND_COLOR = {"华为": (200, 30, 30), "中兴": (30, 90, 200), "爱立信": (20, 30, 90)}
_BRAND_LETTER = {"华为": "H", "中兴": "Z", "爱立信": "E"}
_SCREW_COLOR = {
    "BBU安装螺丝": (190, 190, 200),
    "机柜处接地螺丝": (210, 180, 60),
    "地排处接地螺丝": (190, 110, 60),
    "紧固件": (120, 120, 130),
    "RRU接地端": (150, 200, 60),
    "地排接地端螺丝": (170, 100, 50),
}
_FONT = None


def _font():
    global _FONT
    if _FONT is None:
        from PIL import ImageFont

        _FONT = ImageFont.load_default(size=9)
    return _FONT


def _draw_object(d, obj: Obj, box: tuple[int, int, int, int], rng: random.Random) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    a = obj.attrs
    cat = obj.category
    if cat in ("BBU设备", "RRU设备"):
        rect = (x0, cy - 6, x1, cy + 8) if cat == "BBU设备" else (cx - 8, y0, cx + 8, y1)
        d.rectangle(rect, fill=_BRAND_COLOR[a["品牌"]], outline=(20, 20, 20))
        d.text((cx - 3, cy - 5), _BRAND_LETTER[a["品牌"]], fill=(255, 255, 255), font=_font())
        if a.get("挡风板需求") == "空间充足需安装":  # an empty slot above the device
            d.rectangle((x0 + 2, y0, x1 - 2, y0 + 5), outline=(240, 240, 240))
    elif cat == "挡风板":
        d.rectangle((x0 + 2, y0 + 4, x1 - 2, y1 - 4), fill=(200, 200, 200), outline=(60, 60, 60))
        up = a.get("安装方向") != "方向错误"
        tip, tail = (y0 + 7, y1 - 7) if up else (y1 - 7, y0 + 7)
        d.line((cx, tail, cx, tip), fill=(0, 120, 0), width=2)
        d.polygon([(cx - 4, tip + (4 if up else -4)), (cx + 4, tip + (4 if up else -4)), (cx, tip)], fill=(0, 120, 0))
        if a.get("符合性") == "不符合":
            d.line((x0 + 3, y0 + 5, x1 - 3, y1 - 5), fill=(220, 0, 0), width=2)
    elif cat in _SCREW_COLOR:
        d.ellipse((cx - 7, cy - 7, cx + 7, cy + 7), fill=_SCREW_COLOR[cat], outline=(30, 30, 30))
        if a.get("符合性") == "不符合" or a.get("安装状态") == "不合格":
            d.ellipse((cx - 10, cy - 10, cx + 10, cy + 10), outline=(230, 0, 0), width=2)
        else:
            d.line((cx - 5, cy, cx + 5, cy), fill=(30, 30, 30), width=2)
            d.line((cx, cy - 5, cx, cy + 5), fill=(30, 30, 30), width=2)
    elif cat in ("BBU端光纤插头", "ODF端光纤插头"):
        color = (40, 80, 220) if cat == "BBU端光纤插头" else (40, 170, 80)
        d.line((cx, cy, x1, y1), fill=(250, 220, 0), width=2)
        d.rectangle((cx - 6, cy - 6, cx + 6, cy + 6), fill=color, outline=(20, 20, 20))
        if a.get("符合性") == "不符合":
            d.line((cx - 8, cy - 8, cx + 8, cy + 8), fill=(230, 0, 0), width=2)
            d.line((cx - 8, cy + 8, cx + 8, cy - 8), fill=(230, 0, 0), width=2)
    elif cat == "光纤":
        if a.get("弯曲半径") == "半径不合理":
            pts = [(x0 + 2, y0 + 4), (cx, y1 - 3), (x1 - 2, y0 + 4)]
        else:
            pts = [(x0 + 2, cy), (x0 + 8, y0 + 5), (cx, y0 + 3), (x1 - 8, y0 + 5), (x1 - 2, cy)]
        if a.get("可见性") == "部分":
            pts = pts[: max(2, len(pts) // 2 + 1)]
        if a.get("保护措施") == "有保护":
            d.line(pts, fill=(90, 90, 90), width=7)
        d.line(pts, fill=(250, 220, 0), width=2)
    elif cat == "电线":
        for i in range(3):
            if a.get("捆扎") == "散乱":
                d.line((x0 + 2, rng.randint(y0, y1), x1 - 2, rng.randint(y0, y1)), fill=(10, 10, 10), width=2)
            else:
                y = y0 + 8 + 7 * i
                d.line((x0 + 2, y, x1 - 2 if a.get("可见性") != "部分" else cx, y), fill=(10, 10, 10), width=2)
    elif cat == "尾纤":
        d.line((x0 + 3, y1 - 3, x1 - 3, y0 + 3), fill=(250, 140, 0), width=2)
        if a.get("套管保护") == "有套管":
            d.line((cx - 6, cy + 6, cx + 6, cy - 6), fill=(10, 10, 10), width=6)
        if a.get("标签") == "有标签":
            d.rectangle((x0 + 3, y0 + 3, x0 + 11, y0 + 9), fill=(255, 255, 255), outline=(0, 0, 0))
    elif cat == "接地线":
        end = x1 - 2 if a.get("可见性") != "部分" else cx
        for x in range(x0 + 2, end, 6):
            color = (240, 220, 0) if (x // 6) % 2 else (0, 160, 60)
            d.line((x, cy, min(x + 6, end), cy), fill=color, width=4)
        if a.get("标签") == "有标签":
            d.rectangle((cx - 4, cy + 5, cx + 4, cy + 11), fill=(255, 255, 255), outline=(0, 0, 0))
    elif cat == "标签":
        text = a.get("文本")
        if text:  # the plate grows to fit its text, and stays inside the image
            width = max(x1 - x0, int(d.textlength(text, font=_font())) + 4)
            x0 = min(x0, IMAGE_SIZE[0] - 2 - width)
            x1 = x0 + width
        d.rectangle((x0, cy - 7, x1, cy + 7), fill=(255, 255, 255), outline=(0, 0, 0))
        if text:
            d.text((x0 + 2, cy - 6), text, fill=(0, 0, 0), font=_font())
        else:
            for _ in range(4):
                d.line((rng.randint(x0, x1), cy - 5, rng.randint(x0, x1), cy + 5), fill=(150, 150, 150), width=2)
    elif cat == "站点距离":
        d.rectangle((x0, cy - 7, x1, cy + 7), fill=(250, 230, 90), outline=(0, 0, 0))
        d.text((x0 + 2, cy - 6), f"{a['站点距离']}m", fill=(0, 0, 0), font=_font())
    else:  # pragma: no cover - the plans only use the categories above
        raise KeyError(cat)
    if a.get("可见性") == "部分" and cat in ("BBU设备", "RRU设备", "挡风板"):  # an occluder over half
        d.rectangle((cx, y0, x1, y1), fill=(45, 45, 45))


def render(scene: Scene, rng: random.Random):
    """A PIL image of the scene."""
    from PIL import Image, ImageDraw

    w, h = IMAGE_SIZE
    if scene.irrelevant == "document":
        img = Image.new("RGB", (w, h), (248, 248, 244))
        d = ImageDraw.Draw(img)
        d.text((6, 3), rng.choice(("REPORT", "NOTICE", "FORM A")), fill=(0, 0, 0), font=_font())
        for y in range(18, h - 6, 8):
            d.line((6, y, rng.randint(w // 2, w - 6), y), fill=(90, 90, 90), width=2)
        return img
    if scene.irrelevant == "drawing":
        img = Image.new("RGB", (w, h), (30, 60, 140))
        d = ImageDraw.Draw(img)
        for x in range(0, w, 16):
            d.line((x, 0, x, h), fill=(60, 90, 170))
        for y in range(0, h, 16):
            d.line((0, y, w, y), fill=(60, 90, 170))
        for _ in range(3):
            x, y = rng.randint(4, w - 40), rng.randint(4, h - 30)
            d.rectangle((x, y, x + rng.randint(15, 35), y + rng.randint(10, 25)), outline=(255, 255, 255))
        d.text((4, h - 12), f"DWG-{rng.randint(1, 99):02d}", fill=(255, 255, 255), font=_font())
        return img
    shade = rng.randint(-12, 12)
    if scene.domain == "BBU":  # a cabinet with rails
        img = Image.new("RGB", (w, h), (85 + shade, 88 + shade, 98 + shade))
        d = ImageDraw.Draw(img)
        for y in (1, h - 2):
            d.line((0, y, w, y), fill=(50, 50, 55), width=2)
    else:  # sky and a pole
        img = Image.new("RGB", (w, h), (150 + shade, 190 + shade, 220 + shade))
        d = ImageDraw.Draw(img)
        d.rectangle((w // 2 - 3, 0, w // 2 + 3, h), fill=(110, 110, 110))
    cells = [(c, r) for r in range(3) for c in range(4)]
    if scene.point is not None:  # the install point's plate takes the top-left cell
        cells.remove((0, 0))
        d.rectangle((1, 1, 22, 13), fill=(255, 255, 255), outline=(0, 0, 0))
        d.text((3, 2), f"P{scene.point}", fill=(0, 0, 0), font=_font())
    rng.shuffle(cells)
    for obj, (c, r) in zip(scene.objects, cells):
        _draw_object(d, obj, (c * 32 + 2, r * 32 + 2, c * 32 + 29, r * 32 + 29), rng)
    return img


def _jpeg_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# The world: generate, manifest, ensure.
# --------------------------------------------------------------------------------------


@dataclass
class SynthManifest:
    root: Path
    seed: int
    groups_per_mission: int
    missions: dict[str, dict]  # id -> {name, groups, pass, fail, images, irrelevant_images}
    generator_version: int = GENERATOR_VERSION

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def stage_a_files(self) -> dict[str, Path]:
        return {mid: self.root / "stage_a" / f"{mid}.jsonl" for mid in self.missions}

    @property
    def summary_rows(self) -> Path:
        return self.root / "summary_rows.jsonl"

    @property
    def verdict_rows(self) -> Path:
        return self.root / "verdict_rows.jsonl"

    @property
    def totals(self) -> dict[str, int]:
        keys = ("groups", "pass", "fail", "images", "irrelevant_images")
        return {k: sum(v[k] for v in self.missions.values()) for k in keys}

    def to_json(self) -> str:
        data = {
            "generator_version": self.generator_version,
            "seed": self.seed,
            "groups_per_mission": self.groups_per_mission,
            "root": str(self.root),
            "image_size": list(IMAGE_SIZE),
            "missions": self.missions,
            "totals": self.totals,
        }
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def load(cls, out_dir: str | Path) -> SynthManifest:
        data = json.loads((Path(out_dir) / MANIFEST).read_text(encoding="utf-8"))
        return cls(
            root=Path(data["root"]),
            seed=data["seed"],
            groups_per_mission=data["groups_per_mission"],
            missions=data["missions"],
            generator_version=data["generator_version"],
        )


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _build(tmp: Path, final: Path, seed: int, groups_per_mission: int) -> SynthManifest:
    """Write a world into ``tmp`` whose rows point at ``final`` (where it will live)."""
    from .rows import summary_row, verdict_row  # rows builds prompts; no cycle at import time

    # Group numbers start at seed x 10^6, so two worlds of different seeds never share a group id
    # (a held-out world can validate a model trained on another; seed 0 keeps 0001, 0002, ...).
    counter = seed * 1_000_000
    summary_lines: list[str] = []
    verdict_lines: list[str] = []
    stats: dict[str, dict] = {}
    for m in MISSIONS.values():
        rng = random.Random(f"bbuqc-synth:{seed}:{m.id}")
        groups = []  # (record, reason)
        previous_id = None
        for slot in range(groups_per_mission):
            fail = slot % 2 == 1
            counter += 1
            scenes, _mode = plan_group(m, rng, fail)
            if slot == 2 and previous_id:  # slot 1 (a fail) resubmitted: same id, fixed
                group_id, folder = previous_id, previous_id
                names = [f"{group_id}_{k}.jpg" for k in range(1, len(scenes) + 1)]
            elif slot % 5 == 4:  # no QC prefix: the folder name is the group id
                group_id = folder = f"SYN-{m.id}-{counter:04d}"
                names = [f"img{4 * k - 2}.jpg" for k in range(1, len(scenes) + 1)]  # img2 ... img14
            else:
                group_id = folder = f"QC-SYN-{DATE}-{counter:04d}"
                names = [f"{group_id}_{k}.jpg" for k in range(1, len(scenes) + 1)]
            if slot == 1:
                previous_id = group_id
            summaries = [summary_of(s) for s in scenes]
            per_image = align_summaries(names, summaries)
            label, reason = judge_group(m, per_image)
            if label != ("fail" if fail else "pass"):  # a plan that misses its target is a bug
                raise AssertionError(f"synthetic plan for {m.id} slot {slot} judged {label}: {reason}")
            group_dir = Path("images") / m.name / DIR_OF_LABEL[label] / folder
            for name, scene in zip(names, scenes):
                image_rng = random.Random(f"{seed}:{m.id}:{slot}:{name}")
                _write(tmp / group_dir / name, _jpeg_bytes(render(scene, image_rng)))
            rec = StageARecord(group_id, m.name, label, names, per_image)
            groups.append((rec, reason))
            for name, summary in zip(names, summaries):
                row = summary_row(m, final / group_dir / name, summary)
                summary_lines.append(json.dumps(row, ensure_ascii=False))
        groups.sort(key=lambda g: group_sort_key(g[0].group_id, g[0].label))
        _write(tmp / "stage_a" / f"{m.id}.jsonl", "".join(record_to_line(rec) + "\n" for rec, _ in groups))
        verdict_lines += [json.dumps(verdict_row(rec, reason=reason), ensure_ascii=False) for rec, reason in groups]
        records = [rec for rec, _ in groups]
        stats[m.id] = {
            "name": m.name,
            "groups": len(records),
            "pass": sum(r.label == "pass" for r in records),
            "fail": sum(r.label == "fail" for r in records),
            "images": sum(len(r.images) for r in records),
            "irrelevant_images": sum(s == IRRELEVANT for r in records for s in r.per_image.values()),
        }
    _write(tmp / "summary_rows.jsonl", "".join(line + "\n" for line in summary_lines))
    _write(tmp / "verdict_rows.jsonl", "".join(line + "\n" for line in verdict_lines))
    manifest = SynthManifest(final, seed, groups_per_mission, stats)
    _write(tmp / MANIFEST, manifest.to_json())  # last: its presence means "complete"
    return manifest


def _matches(out: Path, seed: int, groups_per_mission: int) -> bool:
    try:
        manifest = SynthManifest.load(out)
    except (OSError, ValueError, KeyError):
        return False
    return (
        manifest.generator_version == GENERATOR_VERSION
        and manifest.seed == seed
        and manifest.groups_per_mission == groups_per_mission
        and manifest.root == out
    )


def generate(out_dir: str | Path, seed: int = 0, groups_per_mission: int = 6) -> SynthManifest:
    """(Re)build the synthetic world at ``out_dir``, atomically.

    An existing ``out_dir`` is replaced only when it holds nothing but a
    world's entries (possibly none); anything else raises FileExistsError.
    """
    if groups_per_mission < 1:
        raise ValueError(f"groups_per_mission must be >= 1, got {groups_per_mission}")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not (out.is_dir() and {p.name for p in out.iterdir()} <= set(WORLD_ENTRIES)):
        raise FileExistsError(f"{out} exists and is not a synthetic world; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        manifest = _build(tmp, out, seed, groups_per_mission)
        _replace_dir(tmp, out, seed, groups_per_mission)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(tmp: Path, out: Path, seed: int, groups_per_mission: int) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "world")
    try:
        os.rename(tmp, out)
    except OSError:
        # Another process put a world there first: keep it if it is the same one.
        if not _matches(out, seed, groups_per_mission):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_synthetic(out_dir: str | Path, seed: int = 0, groups_per_mission: int = 6) -> Path:
    """``out_dir`` holding the world for (seed, groups_per_mission); generated only when
    its manifest is missing or differs (another seed or size, an older generator, a moved folder)."""
    out = Path(out_dir).expanduser().resolve()
    if not _matches(out, seed, groups_per_mission):
        generate(out, seed, groups_per_mission)
    return out
