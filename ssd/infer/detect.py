"""``ssd detect``: run a detector on image files, write COCO-style detections and drawings.

Inputs are files, folders (their files, not recursive) and glob patterns, expanded and
sorted. Images are read by the one image reader (:mod:`ssd.data.images`: pixel limit
before decoding, EXIF orientation, any mode and bit depth to RGB uint8), as training and
evaluation read them. Files that are not images, cannot be decoded or are too large are
skipped and listed with the reason, never fatal. Writes into ``out_dir``:

- ``detections.json``: COCO results (``image_id``, ``category_id``, ``bbox`` [x, y, w, h]
  in image pixels, ``score``) plus ``file_name`` and ``category_name``; ``ssd evaluate
  --detections`` reads it. ``detections.csv`` instead (same columns, bbox as x, y, w, h)
  with ``fmt="csv"``.
- ``summary.json``: the images (id, file name, size, number of detections), the
  categories, the skipped files with their reasons, and the settings used.
- ``annotated/<file name>``: each image with its boxes drawn and class name and score on a
  filled label above each box (:func:`ssd.infer.drawing.draw_boxes`).
"""

from __future__ import annotations

import csv
import glob
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from torch import Tensor
from torchvision.io import write_jpeg, write_png
from tqdm import tqdm

from ssd.data.images import IMAGE_SUFFIXES, ImageReadError, read_image
from ssd.errors import DetectError
from ssd.infer.detector import Detector
from ssd.infer.drawing import class_color, draw_boxes
from ssd.infer.predict import detections_of

CSV_COLUMNS = [
    "image_id",
    "file_name",
    "category_id",
    "category_name",
    "x",
    "y",
    "w",
    "h",
    "score",
]


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files named by ``inputs`` (paths, folders, glob patterns), sorted and without duplicates.

    Returns ``(files, skipped)``; ``skipped`` lists inputs that match nothing and files that
    are not images (by suffix), each as ``{"file_name", "reason"}``.
    """
    found: set[Path] = set()
    skipped: list[dict[str, str]] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        try:
            if "\x00" in text:
                raise ValueError("the name contains a NUL character")
            if path.is_dir():
                found.update(
                    p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                )
            elif path.is_file():
                found.add(path)
            elif glob.has_magic(text):
                matches = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
                if not matches:
                    skipped.append({"file_name": text, "reason": "the pattern matches no file"})
                found.update(matches)
            else:
                skipped.append({"file_name": text, "reason": "no such file or folder"})
        except (OSError, ValueError) as err:  # a name too long, a NUL, no permission
            reason = getattr(err, "strerror", None) or str(err)
            skipped.append({"file_name": text[:200], "reason": f"cannot be used: {reason}"})
    files = []
    for p in sorted(found):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            skipped.append({"file_name": str(p), "reason": f"not an image file ('{p.suffix}')"})
    return files, skipped


def _readable(
    files: Sequence[Path], skipped: list[dict[str, str]]
) -> Iterator[tuple[Path, Tensor]]:
    for path in files:
        try:
            yield path, read_image(path)
        except ImageReadError as err:
            skipped.append({"file_name": str(path), "reason": str(err)})


def _batches(
    items: Iterator[tuple[Path, Tensor]], size: int
) -> Iterator[list[tuple[Path, Tensor]]]:
    batch: list[tuple[Path, Tensor]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def draw_detections(
    image: Tensor, detection: dict[str, Tensor], class_names: Sequence[str]
) -> Tensor:
    """``image`` (uint8 ``[3, H, W]``) with the boxes drawn and each one's class name and
    score on a filled label (the best score on top where labels overlap)."""
    labels = detection["labels"].tolist()
    scores = detection["scores"].tolist()
    texts = [f"{class_names[c - 1]} {s:.2f}" for c, s in zip(labels, scores, strict=True)]
    colors = [class_color(c) for c in labels]
    return draw_boxes(image, detection["boxes"], texts, colors, scores)


def _annotated_name(path: Path, image_id: int, used: set[str]) -> str:
    suffix = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
    name = path.stem + suffix
    if name in used:
        name = f"{path.stem}_{image_id}{suffix}"
    used.add(name)
    return name


def detect_paths(
    detector: Detector,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    batch_size: int = 8,
    score_threshold: float | None = None,
    draw: bool = True,
    fmt: Literal["json", "csv"] = "json",
    progress: bool = True,
) -> dict[str, Any]:
    """Detect on every image in ``inputs``; write the files described in the module docstring.

    Args:
        detector: the loaded detector (:func:`ssd.infer.detector.load_detector`).
        inputs: files, folders and glob patterns.
        out_dir: output folder (created).
        batch_size: images per forward pass.
        score_threshold: keep detections scoring at least this (None: the detector's
            ``postprocess.detect_score_threshold``).
        draw: write the annotated images.
        fmt: ``json`` (``detections.json``) or ``csv`` (``detections.csv``).

    Returns:
        The summary (also written to ``summary.json``) with ``detections`` added.
    """
    if batch_size < 1:
        raise DetectError(f"batch size must be at least 1, got {batch_size}")
    files, skipped = expand_inputs(inputs)
    if not files and not skipped:
        raise DetectError("no input given: pass image files, folders or glob patterns")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if draw:
        (out / "annotated").mkdir(exist_ok=True)
    if score_threshold is None:
        score_threshold = detector.detect_score_threshold
    used_threshold = max(score_threshold, detector.settings.score_threshold)
    names = detector.class_names

    detections: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    used: set[str] = set()
    seconds = 0.0
    bar = tqdm(total=len(files), desc="detect", unit="img", disable=not progress or len(files) < 2)
    with bar:
        for batch in _batches(_readable(files, skipped), batch_size):
            t0 = time.perf_counter()
            predictions = detector.predict([img for _, img in batch], score_threshold)
            seconds += time.perf_counter() - t0
            for (path, img), pred in zip(batch, predictions, strict=True):
                image_id = len(images) + 1
                entry: dict[str, Any] = {
                    "id": image_id,
                    "file_name": str(path),
                    "height": int(img.shape[-2]),
                    "width": int(img.shape[-1]),
                    "num_detections": len(pred["scores"]),
                }
                for det in detections_of(pred):
                    x1, y1, x2, y2 = det.box
                    detections.append(
                        {
                            "image_id": image_id,
                            "file_name": str(path),
                            "category_id": det.category_id,
                            "category_name": names[det.category_id - 1],
                            "bbox": [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)],
                            "score": round(det.score, 5),
                        }
                    )
                if draw:
                    name = _annotated_name(path, image_id, used)
                    entry["annotated"] = f"annotated/{name}"
                    drawn = draw_detections(img, pred, names)
                    if name.endswith(".jpg"):
                        write_jpeg(drawn, str(out / "annotated" / name), quality=90)
                    else:
                        write_png(drawn, str(out / "annotated" / name))
                images.append(entry)
            bar.update(len(batch))
        bar.update(len(files) - bar.n)  # skipped unreadable files count as done

    if fmt == "csv":
        det_file = out / "detections.csv"
        with det_file.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for d in detections:
                x, y, w, h = d["bbox"]
                row = {k: v for k, v in d.items() if k != "bbox"}
                writer.writerow(row | {"x": x, "y": y, "w": w, "h": h})
    else:
        det_file = out / "detections.json"
        det_file.write_text(json.dumps(detections, indent=1) + "\n")
    summary: dict[str, Any] = {
        "detections_file": det_file.name,
        "num_images": len(images),
        "num_detections": len(detections),
        "num_skipped": len(skipped),
        "score_threshold": used_threshold,
        "postprocess": detector.settings.model_dump(mode="json"),
        "images_per_second": round(len(images) / seconds, 3) if seconds > 0 else None,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        "images": images,
        "skipped": skipped,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary | {"detections": detections}


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What ``ssd detect`` prints of its summary (the skipped files go to stderr)."""
    speed = summary["images_per_second"]
    source = summary.get("threshold_from")
    return [
        f"{summary['num_images']} images, {summary['num_detections']} detections, "
        f"{summary['num_skipped']} skipped" + (f" ({speed:.1f} images/s)" if speed else ""),
        f"kept detections scoring >= {summary['score_threshold']:.3f}"
        + (f" (the F1-optimal threshold of {source})" if source else ""),
        f"wrote {out / summary['detections_file']} and {out / 'summary.json'}",
    ]
