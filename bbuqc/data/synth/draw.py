"""Drawing a planned scene: a small PIL image per scene, saved as a deterministic JPEG.

PIL is imported inside the functions, so importing the generator stays light.
"""

from __future__ import annotations

import io
import random

from .plan import Obj, Scene

IMAGE_SIZE = (128, 96)  # 4 x 3 cells of 32 x 32 pixels, one object per cell (shift layout: 3 x 2 larger cells)
JPEG_QUALITY = 85

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
#: A fibre's protective tube (有保护): a colour no other object uses. Until generator 3 it was grey (90, 90, 90),
#: the cabinet's own colour, and 有保护 and 无保护 looked the same (docs/demo.md, eighth session).
_TUBE_COLOR = (170, 80, 200)


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
            d.line(pts, fill=_TUBE_COLOR, width=7)
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
    if scene.layout == "large":  # shift layout: a 3 x 2 grid of 42 x 41 cells under a 14-pixel strip
        if scene.point is not None:  # the install point's plate sits in the strip, top right
            d.rectangle((w - 23, 1, w - 2, 13), fill=(255, 255, 255), outline=(0, 0, 0))
            d.text((w - 21, 2), f"P{scene.point}", fill=(0, 0, 0), font=_font())
        boxes = [(1 + c * 42 + 2, 14 + r * 41 + 2, 1 + c * 42 + 40, 14 + r * 41 + 39) for r in range(2) for c in range(3)]
    else:
        cells = [(c, r) for r in range(3) for c in range(4)]
        if scene.point is not None:  # the install point's plate takes the top-left cell
            cells.remove((0, 0))
            d.rectangle((1, 1, 22, 13), fill=(255, 255, 255), outline=(0, 0, 0))
            d.text((3, 2), f"P{scene.point}", fill=(0, 0, 0), font=_font())
        boxes = [(c * 32 + 2, r * 32 + 2, c * 32 + 29, r * 32 + 29) for c, r in cells]
    if len(scene.objects) > len(boxes):  # pragma: no cover - the planner keeps within the cells
        raise ValueError(f"{len(scene.objects)} objects do not fit {len(boxes)} cells")
    rng.shuffle(boxes)
    for obj, box in zip(scene.objects, boxes):
        _draw_object(d, obj, box, rng)
    return img


def jpeg_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue()
