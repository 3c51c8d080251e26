"""Procedural scenes: the default dataset, so ``make run`` works on a machine with no data.

Six shape classes (circle, square, triangle, star, cross, ring) with varied colours,
aspect ratios, rotations and fill textures (solid, stripes, checker, gradient, speckle),
on textured backgrounds (gradient + noise + stripes / checker / blotches) with clutter
(lines, scribbles, dots). Objects may overlap, but a new object is only placed where it
leaves every earlier one at least ``MIN_VISIBLE`` visible, so occlusion stays partial.
Object sides run from about 8 px to most of the image, drawn so that COCO small
(< 32²), medium (< 96²) and large objects are all common. Each box is the tight box
of the object's visible pixels (what an annotator would draw).

Image ``i`` depends only on ``(seed, i, image_size)``: a numpy ``Generator`` is seeded
from ``SeedSequence([seed, i])`` and nothing uses global random state.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ssd.data.records import RawBox, RawImage, SourceData

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
MIN_VISIBLE = 0.6  # an object keeps at least this share of its pixels visible
MIN_SIDE = 8.0  # smallest object side in pixels
BUCKET_P = (0.4, 0.35, 0.25)  # chance of a small / medium / large object
Array = np.ndarray


def read_synthetic(num_images: int, image_size: int, seed: int) -> SourceData:
    """A stream of ``num_images`` generated ``image_size``² scenes (no split: by ratio)."""
    images: Iterator[RawImage] = (render_scene(seed, i, image_size) for i in range(num_images))
    return SourceData(
        classes=list(CLASSES),
        images=images,
        description={
            "generator": "ssd.data.sources.synthetic",
            "num_images": str(num_images),
            "image_size": str(image_size),
            "seed": str(seed),
        },
    )


# --------------------------------------------------------------------------- shapes


def _outline(kind: str, rng: np.random.Generator) -> list[Array]:
    """Closed polygons in unit coordinates (radius 1); the ring's second one is its hole."""
    if kind in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], 1)
        return [outer, outer * rng.uniform(0.45, 0.6)] if kind == "ring" else [outer]
    if kind == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)]
    if kind == "triangle":
        t = np.deg2rad([-90.0, 30.0, 150.0])
        return [np.stack([np.cos(t), np.sin(t)], 1)]
    if kind == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    a = rng.uniform(0.28, 0.38)  # cross: arm half-width
    return [
        np.array(
            [
                [-a, -1],
                [a, -1],
                [a, -a],
                [1, -a],
                [1, a],
                [a, a],
                [a, 1],
                [-a, 1],
                [-a, a],
                [-1, a],
                [-1, -a],
                [-a, -a],
            ],
            dtype=np.float64,
        )
    ]


@dataclass
class _Placed:
    label: int
    area: int  # pixels when drawn, before anything covers it


def _shape_mask(
    kind: str,
    center: tuple[float, float],
    half: tuple[float, float],
    angle: float,
    size: int,
    rng: np.random.Generator,
) -> Array:
    """Boolean ``[size, size]`` mask of one shape."""
    polygons = _outline(kind, rng)
    cos, sin = math.cos(angle), math.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for k, poly in enumerate(polygons):
        pts = (poly * np.array(half)) @ rot.T + np.array(center)
        draw.polygon([tuple(p) for p in pts.tolist()], fill=0 if k else 255)
    return np.asarray(canvas) > 0


# --------------------------------------------------------------------------- colours


def _random_colour(rng: np.random.Generator, saturated: bool) -> Array:
    h = rng.random()
    s = rng.uniform(0.55, 1.0) if saturated else rng.uniform(0.05, 0.35)
    v = rng.uniform(0.35, 1.0) if saturated else rng.uniform(0.3, 0.85)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def _texture(
    rng: np.random.Generator, size: int, base: Array, amplitude: float, kind: str
) -> Array:
    """``[size, size, 3]`` float texture around colour ``base``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.broadcast_to(base, (size, size, 3)).copy()
    other = _random_colour(rng, saturated=True) if amplitude < 0 else None
    amp = abs(amplitude)
    if kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * np.pi / period)
        mix = (wave > 0)[..., None] if other is not None else wave[..., None]
    elif kind == "checker":
        cell = int(rng.integers(3, 12))
        mix = (((xx // cell + yy // cell) % 2) * 2 - 1)[..., None]
        mix = (mix > 0) if other is not None else mix
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1.0)
        mix = (ramp * 2 - 1)[..., None]
        other = None
    elif kind == "blotches":
        low = rng.normal(0, 1, (size // 16 + 2, size // 16 + 2))
        up = np.asarray(
            Image.fromarray(
                ((low - low.min()) / max(np.ptp(low), 1e-6) * 255).astype(np.uint8)
            ).resize((size, size), Image.Resampling.BILINEAR),
            dtype=np.float64,
        )
        mix = (up / 127.5 - 1)[..., None]
        other = None
    elif kind == "speckle":
        mix = rng.normal(0, 0.6, (size, size, 1))
        other = None
    else:  # solid
        return out
    if other is not None:
        return np.where(mix, other, out)
    return out + mix * amp * rng.choice([-1.0, 1.0], size=3)


# --------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, size: int) -> Array:
    base = _random_colour(rng, saturated=False)
    img = _texture(rng, size, base, 1.0, "solid")
    img = img + (_texture(rng, size, np.zeros(3), 30.0, "gradient") - 0)
    kind = ["stripes", "checker", "blotches", "blotches"][int(rng.integers(4))]
    img = img + _texture(rng, size, np.zeros(3), rng.uniform(8, 22), kind)
    img = img + rng.normal(0, rng.uniform(3, 10), (size, size, 1))
    return img


def _clutter(rng: np.random.Generator, image: Image.Image, size: int) -> None:
    """Lines, scribbles and dots: texture an object detector must learn to ignore."""
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 20))):
        colour = tuple(int(c) for c in _random_colour(rng, saturated=rng.random() < 0.5))
        kind = rng.random()
        if kind < 0.4:
            p = rng.uniform(0, size, 4).tolist()
            draw.line(p, fill=colour, width=int(rng.integers(1, 3)))
        elif kind < 0.7:
            pts = np.cumsum(rng.normal(0, size / 25, (int(rng.integers(4, 10)), 2)), 0)
            pts += rng.uniform(0, size, 2)
            draw.line([tuple(p) for p in pts.tolist()], fill=colour, width=1)
        else:
            for _ in range(int(rng.integers(3, 12))):
                x, y = rng.uniform(0, size, 2)
                r = rng.uniform(0.5, 2.0)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _side(rng: np.random.Generator, bucket: int, size: int) -> float:
    """Object side (sqrt of its box area) for bucket 0 small, 1 medium, 2 large."""
    top = 0.85 * size
    lo, hi = [(MIN_SIDE, 30.0), (34.0, 92.0), (100.0, top)][bucket]
    hi = min(hi, top)
    lo = min(lo, 0.6 * hi)
    u = rng.random()
    if bucket == 0:  # favour the upper end: median ~20 px, still down to MIN_SIDE
        u = math.sqrt(u)
    return float(lo * (hi / lo) ** u)


def render_scene(seed: int, index: int, size: int) -> RawImage:
    """Generate scene ``index``: its pixels (RGB) and the visible box of every object."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    canvas = Image.fromarray(np.clip(_background(rng, size), 0, 255).astype(np.uint8))
    _clutter(rng, canvas, size)
    pixels = np.asarray(canvas, dtype=np.float64).copy()
    owner = np.full((size, size), -1, dtype=np.int32)
    placed: list[_Placed] = []
    n_objects = int(rng.integers(1, 9))
    large_left = 1 if rng.random() < 0.7 else 2
    for _ in range(n_objects):
        bucket = int(rng.choice(3, p=BUCKET_P))
        if bucket == 2:
            if large_left == 0:
                bucket = 1
            large_left -= 1
        label = int(rng.integers(len(CLASSES)))
        kind = CLASSES[label]
        side = _side(rng, bucket, size)
        aspect = math.exp(rng.uniform(-0.35, 0.35))
        half = (side * math.sqrt(aspect) / 2, side / math.sqrt(aspect) / 2)
        angle = 0.0 if kind in ("circle", "ring") else rng.uniform(0, 2 * np.pi)
        reach = max(half) * (1.42 if kind in ("square", "cross") else 1.0)
        for _attempt in range(20):
            if size - 2 * reach - 2 < 1:
                break
            center = tuple(rng.uniform(reach + 1, size - reach - 1, 2).tolist())
            mask = _shape_mask(kind, (center[0], center[1]), half, angle, size, rng)
            area = int(mask.sum())
            if area < 12:
                break
            covered = np.bincount(owner[mask] + 1, minlength=len(placed) + 1)[1:]
            visible = np.bincount(owner.ravel() + 1, minlength=len(placed) + 1)[1:]
            if all((visible[j] - covered[j]) >= MIN_VISIBLE * p.area for j, p in enumerate(placed)):
                break
        else:
            continue
        if size - 2 * reach - 2 < 1 or area < 12:
            continue
        _paint(rng, pixels, mask, size)
        owner[mask] = len(placed)
        placed.append(_Placed(label=label, area=area))

    boxes: list[RawBox] = []
    for j, p in enumerate(placed):
        ys, xs = np.nonzero(owner == j)
        if xs.size == 0:
            continue
        boxes.append(
            RawBox(
                float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), p.label
            )
        )
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    name = f"{index:06d}.png"
    return RawImage(file_name=name, annotation=name, pixels=image, boxes=boxes)


def _paint(rng: np.random.Generator, pixels: Array, mask: Array, size: int) -> None:
    """Fill ``mask`` with a textured colour that stands out from what lies under it."""
    under = pixels[mask].mean(axis=0)
    colour = _random_colour(rng, saturated=True)
    for _ in range(8):
        if np.linalg.norm(colour - under) > 90:
            break
        colour = _random_colour(rng, saturated=True)
    kind = ["solid", "solid", "stripes", "checker", "gradient", "speckle"][int(rng.integers(6))]
    amplitude = -1.0 if kind in ("stripes", "checker") and rng.random() < 0.5 else 35.0
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(max(y1 - y0, x1 - x0))
    tex = _texture(rng, side, colour, amplitude, kind)[: y1 - y0, : x1 - x0]
    local = mask[y0:y1, x0:x1]
    region = pixels[y0:y1, x0:x1]
    region[local] = tex[local]
    if rng.random() < 0.5 and side >= 6:  # a crisp dark or light outline
        inner = local.copy()
        inner[1:, :] &= local[:-1, :]
        inner[:-1, :] &= local[1:, :]
        inner[:, 1:] &= local[:, :-1]
        inner[:, :-1] &= local[:, 1:]
        edge = local & ~inner
        region[edge] = 20.0 if colour.mean() > 110 else 235.0
