"""The one image reader: every image the project looks at is decoded here.

``ssd prepare`` (checking and converting source images), training
(:mod:`ssd.data.dataset`), evaluation, ``ssd detect`` and the MLflow model all call
:func:`read_image` (or :func:`decode_image`), so an image means the same pixels everywhere:

- the pixel count in the file's header is checked *before* anything is decoded
  (:data:`MAX_PIXELS`): a 70-byte PNG claiming 60000x60000 pixels is refused, not allocated;
- only the formats in :data:`FORMATS` are opened (Pillow, chosen by content, not by name);
- a JPEG lacking only its end-of-image marker is read whole, as viewers show it (and
  re-encoded when prepared); one cut inside its picture data is refused;
- the EXIF orientation is applied: pixels (and sizes) are those of the displayed image;
- every mode and bit depth becomes RGB uint8: 16-bit samples are scaled by 255/65535
  (the full range, as ``ToDtype(scale=True)`` does), float samples are taken as [0, 1],
  alpha is dropped, palettes, CMYK, YCbCr and the rest are converted by Pillow;
- a file that cannot be used raises :class:`ImageReadError` with one line saying why
  (its ``reason`` is a stable code: ``image_too_large``; ``corrupt_image`` for a file that
  is not a readable image in one of the formats read; ``unsupported_image`` for an array
  of another shape or type).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from torch import Tensor

# Refused above this many pixels (100 megapixels: 300 MB as RGB uint8). Pillow's own
# decompression-bomb limit is 89.5 MP with a warning and an error at twice that.
MAX_PIXELS = 100_000_000
# Pillow format names that may be opened (by content). Others (EPS, PDF, ...) are refused:
# some of Pillow's plugins start external programs.
# (JPEG includes MPO, the multi-picture JPEG of some cameras: its first picture is read.)
FORMATS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "WEBP", "GIF", "PPM")
# File names looked at as images when a folder is scanned (VOC, YOLO, ssd detect).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
# Files a browser, torchvision and every COCO tool read as they are: a prepared dataset
# copies these unchanged and re-encodes anything else as PNG (see DecodedImage.plain).
PLAIN_FORMATS = ("JPEG", "MPO", "PNG")
PLAIN_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "PA")

# Reasons (ImageReadError.reason), also the reason codes of a prepare report.
TOO_LARGE = "image_too_large"
UNSUPPORTED = "unsupported_image"
CORRUPT = "corrupt_image"

EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """An image file that is refused; the message says why in one line, ``reason`` is a code."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class DecodedImage:
    """A decoded image and what was done to it.

    Attributes:
        pixels: RGB, 8 bits per channel, in the displayed orientation.
        orientation: the EXIF orientation that was applied (1 = none, 2-8 = flips and
            quarter turns, as in the EXIF standard).
        stored_size: ``(width, height)`` as stored in the file, before the orientation.
        format: Pillow's name of the file format (``JPEG``, ``PNG``, ...).
        mode: Pillow's mode of the stored pixels (``RGB``, ``I;16``, ``CMYK``, ...).
    """

    pixels: Image.Image
    orientation: int
    stored_size: tuple[int, int]
    format: str
    mode: str
    deep: bool = False  # more than 8 bits per sample in the file (Pillow may show 8)
    repaired: bool = False  # a JPEG read with the end-of-image marker it lacked

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` as displayed (after the orientation)."""
        return self.pixels.size

    @property
    def plain(self) -> bool:
        """Whether any reader shows the file as this reader does: JPEG or PNG, 8-bit samples,
        no orientation to apply. Other files are re-encoded when a dataset is prepared."""
        return (
            self.format in PLAIN_FORMATS
            and self.mode in PLAIN_MODES
            and not self.deep
            and self.orientation == 1
            and not self.repaired
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def check_pixels(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """Raise :class:`ImageReadError` when ``width x height`` is over ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageReadError(
            f"{width}x{height} = {width * height / 1e6:.0f} megapixels is over the limit of "
            f"{max_pixels / 1e6:.0f} (a decompression bomb, or an image to tile or downscale "
            "first); not decoded",
            TOO_LARGE,
        )


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: Pillow raises many kinds; the image itself is fine
        return 1
    return value if 1 <= value <= 8 else 1


def orient_box(
    corners: tuple[float, float, float, float], orientation: int, stored_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A box ``(x1, y1, x2, y2)`` drawn on the stored pixels (``stored_size`` = ``(W, H)``),
    moved as :func:`PIL.ImageOps.exif_transpose` moves the pixels for ``orientation``."""
    w, h = stored_size
    x1, y1, x2, y2 = corners
    # where a stored point (x, y) lands in the displayed image, per EXIF orientation
    moves = {
        1: lambda x, y: (x, y),
        2: lambda x, y: (w - x, y),  # mirrored
        3: lambda x, y: (w - x, h - y),  # turned 180°
        4: lambda x, y: (x, h - y),  # upside down
        5: lambda x, y: (y, x),  # transposed
        6: lambda x, y: (h - y, x),  # turned 90° clockwise to display
        7: lambda x, y: (h - y, w - x),  # transversed
        8: lambda x, y: (y, w - x),  # turned 90° counter-clockwise to display
    }
    move = moves.get(orientation, moves[1])
    (ax, ay), (bx, by) = move(x1, y1), move(x2, y2)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB with 8 bits per channel (see the module docstring)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(im).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if im.mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        gray = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if im.mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")  # Pillow asks for this before dropping a palette's alpha
    return im.convert("RGB")


def decode_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode a file (its path or its bytes) as described in the module docstring.

    Raises:
        ImageReadError: too many pixels (checked on the header, before decoding), a format
            outside :data:`FORMATS`, or a file that cannot be decoded (truncated, corrupt).
    """
    fp: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    Image.init()  # registers every plugin (MPO is not among the preloaded ones)
    with warnings.catch_warnings():
        # Over Pillow's own limit it warns (or raises, handled below); ours is checked here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp, formats=FORMATS) as im:
                check_pixels(im.width, im.height, max_pixels)
                fmt, mode, stored = str(im.format), im.mode, im.size
                # a 16-bit RGB PNG opens as mode RGB (its high bytes); its tile says 16
                deep = any(";16" in str(tile[3]) for tile in im.tile)
                orientation = _orientation(im)
                im.load()
                shown = ImageOps.exif_transpose(im) if orientation != 1 else im
                pixels = to_rgb8(shown)
                if pixels is im:
                    pixels = im.copy()  # the file is closed on leaving the with block
        except ImageReadError:
            raise
        except Image.DecompressionBombError as err:  # over twice Pillow's limit: its check
            found = re.search(r"\((\d+) pixels\)", str(err))
            count = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "the image"
            raise ImageReadError(
                f"{count} is over the limit of {max_pixels / 1e6:.0f} (a decompression bomb, "
                "or an image to tile or downscale first); not decoded",
                TOO_LARGE,
            ) from None
        except UnidentifiedImageError:
            raise ImageReadError(
                "not a readable image: corrupt, or not one of the formats read "
                "(JPEG, PNG, BMP, TIFF, WebP, GIF, PPM/PGM)",
                CORRUPT,
            ) from None
        except FileNotFoundError:
            raise ImageReadError("file not found", CORRUPT) from None
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
            whole = _jpeg_lacking_only_its_end(source) if "truncated" in str(err) else None
            if whole is not None:  # as every viewer shows it; re-encoded when prepared
                decoded = decode_image(whole, max_pixels)
                decoded.repaired = True
                return decoded
            raise ImageReadError(f"cannot be decoded: {_first_line(err)}", CORRUPT) from None
    return DecodedImage(pixels, orientation, stored, fmt, mode, deep)


JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


def _jpeg_lacking_only_its_end(source: str | Path | bytes) -> bytes | None:
    """The JPEG's bytes with the end-of-image marker appended, when that marker is all the
    file lacks (some cameras and uploads cut it; browsers and libjpeg show the image whole);
    None for any other file, such as a JPEG cut inside its picture data.

    libjpeg decodes the picture data missing after a marker as zero bits: if bytes inserted
    before the added marker change no pixel, no picture data was missing.
    """
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError:
        return None
    if not data.startswith(JPEG_SOI) or data.rstrip(b"\x00").endswith(JPEG_EOI):
        return None

    def pixels(extra: bytes) -> bytes | None:
        try:
            with Image.open(io.BytesIO(data + extra + JPEG_EOI), formats=("JPEG",)) as im:
                im.load()
                return im.tobytes()
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            return None

    plain = pixels(b"")
    return data + JPEG_EOI if plain is not None and plain == pixels(b"\xaa" * 64) else None


def pil_to_tensor(im: Image.Image) -> Tensor:
    """An RGB Pillow image as a uint8 tensor ``[3, H, W]`` (contiguous)."""
    import torch

    array = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    # numpy's transpose copy is several times faster than torch's permute().contiguous()
    # when other processes share the CPU (as data loader workers do)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Tensor:
    """RGB uint8 ``[3, H, W]`` in the displayed orientation (see :func:`decode_image`)."""
    return pil_to_tensor(decode_image(source, max_pixels).pixels)


def image_from_array(array: Any, max_pixels: int = MAX_PIXELS) -> Tensor:
    """An image given as an array (``H x W``, or ``H x W x C`` with C = 1, 3 or 4) as RGB
    uint8 ``[3, H, W]``: uint8 as is, uint16 scaled by 255/65535, floats taken as [0, 1],
    booleans as 0/255; a fourth (alpha) channel is dropped.

    Raises:
        ImageReadError: another shape or dtype, or too many pixels.
    """
    import torch

    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[:, :, :3] if arr.shape[2] != 1 else arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise ImageReadError(
            f"expected an H x W or H x W x 3 array, got shape {arr.shape}", UNSUPPORTED
        )
    check_pixels(int(arr.shape[1]), int(arr.shape[0]), max_pixels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = ((arr.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageReadError(
            f"expected uint8, uint16, float or bool pixels, got {arr.dtype}", UNSUPPORTED
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
