"""One image loader for training rows, Stage-A and validation: a file in, an RGB PIL image out.

Every mode Pillow opens is converted by one rule (``to_rgb``), the EXIF orientation is applied,
and a photo larger than the pixel budget is downscaled while it is decoded, so a model sees the
same pixels whichever command reads the file:

- ``RGB``, ``L``, ``1``, ``YCbCr``: ``convert("RGB")``.
- 16-bit and 32-bit integer grey (``I;16``, ``I;16B``, ``I``): the high byte of the 16-bit value
  (``v >> 8``, values clipped to 0..65535), so the full 16-bit range maps to 0..255.
  ``convert("RGB")`` would clip at 255 and turn almost every pixel white.
- float grey (``F``): 0..1 when its maximum is at most 1, else the 16-bit rule.
- anything with alpha (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``) or with a
  transparent colour (``transparency`` in a palette, ``L`` or ``RGB`` PNG): composited on
  white (``BACKGROUND``), the colour a transparent scan or screenshot shows on a page.
- ``CMYK``: through its embedded ICC profile to sRGB when it has one (ImageCms), else Pillow's
  ``convert("RGB")``.
- any other mode Pillow can convert: ``convert("RGB")``; one it cannot is an ``ImageReadError``.

Orientation: ``ImageOps.exif_transpose`` (phone photos store sideways pixels plus an EXIF
rotation), before anything else looks at the pixels.

Pixel budget ``max_pixels``: a JPEG decodes at 1/2, 1/4 or 1/8 scale (``Image.draft``, DCT
scaling: the full-size image never exists in memory) to the smallest scale still at least the
target size; then any image still above the budget is resized (Lanczos, with ``reducing_gap``
so Pillow first ``reduce``s by an integer factor) to ``floor(w*s) x floor(h*s)``,
``s = sqrt(max_pixels / (w*h))``. ``None`` or 0 keeps the full size.

ms-swift opens training images itself, from the row's ``images`` paths (``swift.template.
vision_utils.load_image``: ``Image.open`` + ``convert("RGB")``; for Qwen-VL templates
``qwen_vl_utils.fetch_image``, which composites only ``RGBA`` on white), with no EXIF
orientation and the saturating 16-bit conversion. So bbuqc does not hand it such files:
``training_copies`` writes every image that this loader would change (``conversion_reason`` is
not None) as a PNG of the loader's output into the run's data folder, and the rows point at
the copies. An image ms-swift would read identically (8-bit RGB/grey/palette, no transparency, upright,
within the budget) is used as it is, so the common case copies nothing.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bbuqc.errors import InputError

if TYPE_CHECKING:  # PIL is imported inside the functions: the config path stays light
    from PIL import Image as PILImage

# Qwen2-VL's image processor default (16384 patches of 28x28): the processor never keeps more.
DEFAULT_MAX_PIXELS = 16384 * 28 * 28
BACKGROUND = (255, 255, 255)
_PLAIN_MODES = ("RGB", "L", "1")  # modes ms-swift's convert("RGB") handles exactly as we do
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_ORIENTATION = 0x0112


class ImageReadError(InputError, OSError):
    """An image file that cannot be opened or converted; the message names the file. Also an
    OSError, like the Pillow errors it replaces, so callers that catch those keep working."""


def _budget_size(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int] | None:
    """The size to downscale ``size`` to, or None when it is within the budget."""
    w, h = size
    if not max_pixels or w * h <= max_pixels:
        return None
    s = math.sqrt(max_pixels / (w * h))
    return max(1, math.floor(w * s)), max(1, math.floor(h * s))


def _has_transparency(image: PILImage.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """The image as RGB by the module's rules (see the module docstring)."""
    import numpy as np
    from PIL import Image

    mode = image.mode
    if _has_transparency(image):
        rgba = image.convert("RGBA")  # applies a palette / tRNS transparency and un-premultiplies
        out = Image.new("RGB", rgba.size, BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT:
        arr = np.asarray(image)
        if arr.dtype != np.uint16:
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        if arr.size and np.nanmax(arr) <= 1.0:
            grey = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            grey = (np.clip(np.nan_to_num(arr), 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "CMYK" and image.info.get("icc_profile"):
        import io

        from PIL import ImageCms

        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: fall back to Pillow's conversion
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageReadError(f"mode {mode} cannot be converted to RGB ({exc})") from None


def conversion_reason(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Why ``load_image`` would give other pixels than a plain ``Image.open(...).convert("RGB")``
    (ms-swift's reading), from the header only; None when both agree."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in _PLAIN_MODES + ("P",):  # an opaque palette converts the same either way
            return f"mode {image.mode}"
        if "transparency" in image.info:
            return "transparency"
        orientation = image.getexif().get(_ORIENTATION, 1)
        if orientation not in (None, 1):
            return f"EXIF orientation {orientation}"
        if _budget_size(image.size, max_pixels):
            return f"{image.size[0]}x{image.size[1]} above max_pixels={max_pixels}"
    return None


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> PILImage.Image:
    """An RGB PIL image, upright, within ``max_pixels``, fully decoded (a truncated file raises
    here). Raises ``ImageReadError`` naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            target = _budget_size(image.size, max_pixels)
            if target and image.format == "JPEG":
                image.draft(None, target)  # DCT scaling: decode at 1/2, 1/4 or 1/8, still >= target
            image.load()  # the pixels are in memory now: closing the file keeps them
            ImageOps.exif_transpose(image, in_place=True)  # no copy when already upright
            rgb = to_rgb(image)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: cannot be read (not an image Pillow recognises)") from None
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc})") from None
    target = _budget_size(rgb.size, max_pixels)  # the orientation may have swapped w and h
    if target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb


def image_problem(path: str | Path) -> str | None:
    """Why the file is not a usable image, checked cheaply (header, size, ``verify()``; a JPEG is
    decoded at 1/8 scale, which also reads its whole stream), or None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            if w < 1 or h < 1:
                return f"empty image ({w}x{h})"
            fmt, mode = image.format, image.mode
            image.verify()  # PNG: chunk CRCs and the end of the stream; nothing decoded
        if fmt == "JPEG":
            with Image.open(path) as image:
                image.draft(None, (max(1, w // 8), max(1, h // 8)))
                image.load()
        elif mode not in _PLAIN_MODES + _SIXTEEN_BIT + _ALPHA_MODES + ("P", "F", "CMYK", "YCbCr"):
            with Image.open(path) as image:
                image.load()
                to_rgb(image)
    except ImageReadError as exc:
        return str(exc)
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, struct.error, ...)
        text = str(exc).strip() or type(exc).__name__
        if type(exc).__name__ == "UnidentifiedImageError":
            text = "not an image Pillow recognises"
        return text
    return None


def _copy_name(path: Path) -> Path:
    """``<hash>/<group folder>/<stem>.png``: unique per source file, the group folder kept
    (rows are grouped by their image's folder)."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:16]
    return Path(digest) / path.parent.name / f"{path.stem}.png"


def training_copies(
    paths: list[str], out_dir: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> dict[str, str]:
    """``{source path: path to give ms-swift}``: the source itself when ms-swift reads it like
    ``load_image`` does, else a PNG of ``load_image``'s output under ``out_dir`` (written to a
    temporary name and renamed, so an interrupted run leaves no half image)."""
    out_dir = Path(out_dir)
    mapping: dict[str, str] = {}
    for src in dict.fromkeys(paths):
        path = Path(src).resolve()
        try:
            reason = conversion_reason(path, max_pixels)
        except Exception as exc:
            raise ImageReadError(f"{path}: cannot be read ({exc})") from None
        if reason is None:
            mapping[src] = src
            continue
        dest = out_dir / _copy_name(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        load_image(path, max_pixels).save(tmp, format="PNG")
        os.replace(tmp, dest)
        mapping[src] = str(dest)
    return mapping


def rows_with_training_images(rows, out_dir: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """A ``datasets.Dataset`` (or a list of row dicts) whose ``images`` point at ``training_copies``;
    rows without images are returned unchanged."""
    is_list = isinstance(rows, list)
    columns = rows[0].keys() if is_list and rows else getattr(rows, "column_names", [])
    if "images" not in columns:
        return rows
    images = [r["images"] for r in rows] if is_list else rows["images"]
    mapping = training_copies([p for row in images for p in (row or [])], out_dir, max_pixels)
    if is_list:
        return [{**r, "images": [mapping[p] for p in r["images"] or []]} for r in rows]
    return rows.map(lambda r: {"images": [mapping[p] for p in r["images"] or []]})
