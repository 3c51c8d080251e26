"""The one image reader: pixel limit before decoding, EXIF orientation, every mode and bit
depth to RGB uint8, one reason per refused file."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from data_builders import exif_jpeg, png16, png_header_only, real_big_png
from PIL import Image, ImageOps

from ssd.data.images import (
    CORRUPT,
    TOO_LARGE,
    ImageReadError,
    decode_image,
    image_from_array,
    orient_box,
    read_image,
)


def test_a_header_claiming_60000x60000_is_refused_before_decoding(tmp_path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(60000, 60000))
    assert bomb.stat().st_size < 100
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match="3600 megapixels is over the limit") as err:
        read_image(bomb)
    assert err.value.reason == TOO_LARGE
    assert time.perf_counter() - start < 1.0  # nothing was allocated or decoded


def test_a_real_20000x20000_image_is_refused_with_the_reason(tmp_path, monkeypatch) -> None:
    big = real_big_png(tmp_path / "big.png", 20000, 20000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # only to show the file is genuine
    with Image.open(big) as im:
        assert im.format == "PNG" and im.size == (20000, 20000)
    monkeypatch.undo()
    with pytest.raises(ImageReadError, match="400 megapixels is over the limit") as err:
        read_image(big)
    assert err.value.reason == TOO_LARGE
    # a lower limit applies to smaller images too
    with pytest.raises(ImageReadError):
        read_image(real_big_png(tmp_path / "mid.png", 300, 300), max_pixels=300 * 299)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_moves_pixels_and_boxes_alike(tmp_path, orientation: int) -> None:
    stored = (40, 20)
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[2:5, 10:16] = 255  # a block at x 10..16, y 2..5 of the stored image
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif.tobytes())
    decoded = decode_image(buf.getvalue())
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue())))
    assert decoded.size == shown.size and decoded.orientation == orientation
    assert decoded.stored_size == stored
    ys, xs = np.nonzero(np.asarray(decoded.pixels)[..., 0] > 128)
    block = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert orient_box((10, 2, 16, 5), orientation, stored) == block


def test_a_rotated_jpeg_reads_as_displayed(tmp_path) -> None:
    path = exif_jpeg(tmp_path / "phone.jpg", (64, 32), 6, marker=True)
    image = read_image(path)
    assert image.shape == (3, 64, 32)  # stored 64 wide, shown 32 wide
    assert image[:, :8, -4:].float().mean() > 200  # stored top-left is now top-right
    assert not decode_image(path).plain  # prepare re-encodes it


def test_16_bit_pngs_use_the_full_range(tmp_path) -> None:
    gray = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    rgb = np.stack([gray, gray // 2, 65535 - gray], axis=-1)
    for path, values in ((png16(tmp_path / "g.png", gray), gray), (png16(tmp_path / "c.png", rgb), rgb)):
        image = read_image(path)
        assert image.dtype == torch.uint8 and image.shape == (3, 1, 4)
        expected = np.round(values.astype(np.float64) / 257).astype(np.uint8)
        got = image.permute(1, 2, 0).numpy()
        expected = expected if expected.ndim == 3 else np.repeat(expected[..., None], 3, axis=2)
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "YCbCr"]
)
def test_every_mode_becomes_rgb_uint8(tmp_path, mode: str) -> None:
    im = Image.new("RGB", (12, 8), (200, 100, 50)).convert(mode)
    if mode == "P":
        im.info["transparency"] = 0
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "F": "TIFF", "I": "TIFF", "PA": "TIFF"}.get(mode, "PNG")
    path = tmp_path / f"x.{fmt.lower()}"
    im.save(path, format=fmt)
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 8, 12)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "WEBP", "GIF", "PPM"])
def test_formats_torchvision_lacks_are_read(tmp_path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (10, 6), (10, 200, 30)).save(path, format=fmt)
    image = read_image(path)
    assert image.shape == (3, 6, 10)
    assert abs(int(image[1, 3, 5]) - 200) <= 8  # WebP and GIF are lossy / paletted


def test_refused_files_say_why(tmp_path) -> None:
    eps = tmp_path / "x.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")  # not opened
    cut = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:-400])
    for path, needle in ((eps, "not a readable image"), (cut, "cannot be decoded")):
        with pytest.raises(ImageReadError, match=needle) as err:
            read_image(path)
        assert err.value.reason == CORRUPT and "\n" not in str(err.value)


def test_arrays_of_any_depth() -> None:
    u16 = np.full((4, 5), 65535, np.uint16)
    assert image_from_array(u16).shape == (3, 4, 5) and int(image_from_array(u16).max()) == 255
    rgba = np.zeros((4, 5, 4), np.uint8)
    assert image_from_array(rgba).shape == (3, 4, 5)
    assert int(image_from_array(np.full((2, 2, 3), 0.5)).max()) == 128
    with pytest.raises(ImageReadError, match="int64"):
        image_from_array(np.zeros((2, 2, 3), np.int64))
    with pytest.raises(ImageReadError, match="shape"):
        image_from_array(np.zeros((2, 2, 2, 2), np.uint8))
