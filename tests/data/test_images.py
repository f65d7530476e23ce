"""The one image loader (bbuqc/io/images.py): every mode, EXIF orientation, the pixel budget,
the cheap readability check, and the copies ms-swift is given for training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from bbuqc.io.images import (
    ImageReadError,
    conversion_reason,
    image_problem,
    load_image,
    rows_with_training_images,
    training_copies,
)
from bbuqc.stage_a.backends import load_image as stage_a_load_image


def gradient16(path, w=64, h=32):
    """A 16-bit grey PNG whose values span 0..65535 left to right."""
    row = np.linspace(0, 65535, w).astype(np.uint16)
    Image.fromarray(np.tile(row, (h, 1))).save(path)
    return path


@pytest.mark.parametrize("loader", [load_image, stage_a_load_image])
def test_16_bit_png_keeps_its_range(tmp_path, loader):
    path = gradient16(tmp_path / "g16.png")
    assert Image.open(path).mode == "I;16"
    arr = np.asarray(loader(path))
    assert arr.shape == (32, 64, 3)
    assert (arr == 255).mean() < 0.05  # convert("RGB") saturates ~99% of these pixels
    assert arr[:, 0].max() == 0 and arr[:, -1].min() == 255
    assert abs(int(arr[0, 32, 0]) - 130) <= 2  # the middle of the ramp is mid-grey


def test_32_bit_integer_grey_uses_the_16_bit_range(tmp_path):
    path = tmp_path / "i32.tif"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.int32), "I").save(path)
    assert Image.open(path).mode == "I"
    assert np.asarray(load_image(path))[0, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize("loader", [load_image, stage_a_load_image])
def test_transparent_pixels_become_white(tmp_path, loader):
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # transparent black
    rgba.paste((200, 0, 0, 255), (0, 0, 5, 10))  # opaque red left half
    rgba.save(tmp_path / "rgba.png")
    rgba.convert("LA").save(tmp_path / "la.png")
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0, 0, 200, 0])
    pal.paste(1, (0, 0, 5, 10))
    pal.save(tmp_path / "pal.png", transparency=0)
    for name, left in [("rgba.png", [200, 0, 0]), ("pal.png", [0, 200, 0])]:
        arr = np.asarray(loader(tmp_path / name))
        assert arr[0, 9].tolist() == [255, 255, 255], name
        assert arr[0, 0].tolist() == left, name
    la = np.asarray(loader(tmp_path / "la.png"))
    assert la[0, 9].tolist() == [255, 255, 255] and la[0, 0, 0] == la[0, 0, 1] == la[0, 0, 2] < 100


def test_cmyk_and_grey(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    r, g, b = np.asarray(load_image(tmp_path / "cmyk.jpg"))[4, 4].tolist()
    assert r < 40 and g > 215 and b > 215  # cyan
    Image.new("L", (8, 8), 77).save(tmp_path / "grey.png")
    assert np.asarray(load_image(tmp_path / "grey.png"))[0, 0].tolist() == [77, 77, 77]


@pytest.mark.parametrize("loader", [load_image, stage_a_load_image])
def test_exif_orientation_is_applied(tmp_path, loader):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = loader(tmp_path / "phone.jpg")
    assert out.size == (20, 40)  # shown upright: portrait
    top = np.asarray(out)[2, 10]
    assert top[0] > 200 and top[2] < 60  # the stored left edge is now on top


def test_large_jpeg_is_downscaled_while_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 120, 30)).save(path, quality=80)
    decoded = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        decoded.append(self.size)  # the size the decoder will produce
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = load_image(path, max_pixels=500_000)
    assert decoded == [(1000, 750)]  # DCT-scaled to 1/4: the 12 MP image never exists in memory
    w, h = out.size
    assert 0.97 * 500_000 <= w * h <= 500_000 and abs(w / h - 4 / 3) < 0.01
    assert load_image(path, max_pixels=None).size == (4000, 3000)


def test_large_png_is_reduced_to_the_budget(tmp_path):
    Image.new("RGB", (1200, 900), (1, 2, 3)).save(tmp_path / "big.png")
    w, h = load_image(tmp_path / "big.png", max_pixels=100_000).size
    assert w * h <= 100_000 and w * h > 95_000


def test_unreadable_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match=r"bad\.png: cannot be read"):
        load_image(bad)


def make_truncated_jpeg(path):
    Image.effect_noise((256, 256), 64).convert("RGB").save(path, quality=90)
    path.write_bytes(path.read_bytes()[:-2000])
    return path


def test_image_problem_is_cheap_and_catches_broken_files(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(good)
    assert image_problem(good) is None
    gradient16(tmp_path / "g16.png")
    assert image_problem(tmp_path / "g16.png") is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"hello")
    png = tmp_path / "cut.png"
    Image.effect_noise((128, 128), 64).save(png)
    png.write_bytes(png.read_bytes()[:-300])
    for name in ("empty.jpg", "text.jpg", "cut.png"):
        assert image_problem(tmp_path / name), name
    assert "truncated" in image_problem(make_truncated_jpeg(tmp_path / "cut.jpg"))


def test_training_copies_only_for_images_ms_swift_would_read_otherwise(tmp_path):
    plain = tmp_path / "g1" / "plain.jpg"
    plain.parent.mkdir()
    Image.new("RGB", (32, 32), (5, 6, 7)).save(plain)
    wide = gradient16(tmp_path / "g2" / "deep.png") if (tmp_path / "g2").mkdir() is None else None
    assert conversion_reason(plain) is None
    opaque = Image.new("P", (8, 8), 1)
    opaque.putpalette([0, 0, 0, 9, 9, 9])
    opaque.save(tmp_path / "opaque.png")
    assert conversion_reason(tmp_path / "opaque.png") is None
    opaque.save(tmp_path / "clear.png", transparency=0)
    assert conversion_reason(tmp_path / "clear.png") == "transparency"
    assert conversion_reason(wide) == "mode I;16"
    mapping = training_copies([str(plain), str(wide), str(plain)], tmp_path / "run" / "images")
    assert mapping[str(plain)] == str(plain)
    copy = mapping[str(wide)]
    assert copy.startswith(str(tmp_path / "run" / "images")) and copy.endswith("/g2/deep.png")
    with Image.open(copy) as img:  # what ms-swift does with it
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(load_image(wide)))
    assert not list((tmp_path / "run").rglob(".*tmp*"))
    rows = rows_with_training_images([{"images": [str(wide)], "x": 1}], tmp_path / "run" / "images")
    assert rows == [{"images": [copy], "x": 1}]


def test_training_copies_of_a_dataset(tmp_path):
    import datasets

    wide = gradient16(tmp_path / "deep.png")
    ds = datasets.Dataset.from_list([{"images": [str(wide)], "mission": "bbu_wind"}])
    out = rows_with_training_images(ds, tmp_path / "imgs", max_pixels=1000)
    (path,) = out[0]["images"]
    assert path != str(wide) and Image.open(path).size[0] * Image.open(path).size[1] <= 1000
