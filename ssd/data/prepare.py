"""``ssd prepare``: any supported input → one canonical dataset under ``data/prepared/<name>/``.

Steps: read the source (``sources/``), check every image and box (``validate.py``: every
file inside ``data.path``, decoded by the one image reader ``images.py``), copy the images
(re-encoded as PNG when they are not plain JPEG / PNG), assign splits (``splits.py``),
write the COCO JSONs, ``classes.json``, ``report.json`` and ``stats.png`` (``writer.py``,
``stats.py``). The output is built in a hidden sibling folder and moved into place at the
end, so a failed run leaves the previous dataset untouched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd.config import MAX_CLASSES, DataConfig
from ssd.errors import DataError
from ssd.data.prepared import SPLITS
from ssd.data.report import DUPLICATE_ID, Report
from ssd.data.sources import read_source
from ssd.data.splits import assign_splits
from ssd.data.stats import compute_stats, plot_stats
from ssd.data.validate import ValidImage, validate_image
from ssd.data.writer import coco_split, write_image, write_json


@dataclass
class PrepareResult:
    """What ``prepare`` wrote: the folder, the counts of ``report.json`` and the classes."""

    out_dir: Path
    counts: dict[str, Any]
    classes: list[str]
    splits: dict[str, str]  # how each split was made

    def summary(self) -> str:
        """The counts as a few lines for the command line."""
        return summary(self.out_dir, self.counts, self.classes, self.splits)


def prepare_dataset(cfg: DataConfig) -> PrepareResult:
    """Prepare the dataset ``cfg`` describes into ``cfg.prepared_dir`` and say what was kept.

    Raises :class:`DataError` with one message saying what to fix when the input is
    unusable: path missing, no class names, no valid image, no box at all, a split left
    empty.
    Everything else that is wrong is skipped or fixed and listed in ``report.json``.
    """
    out_dir = cfg.prepared_dir
    require_replaceable(out_dir)
    work = out_dir.parent / f".{out_dir.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    (work / "images").mkdir(parents=True)
    try:
        report = Report()
        source = read_source(cfg, report)
        if not source.classes:
            hint = {
                "voc": "no annotation names an object; add objects or set data.names_file",
                "coco": "the JSON has no usable 'categories' list",
            }.get(cfg.source, "set data.names_file")
            problems = f" ({len(report.skipped)} problems, first: {_first_problem(report)})"
            raise DataError(
                f"no class names found in {cfg.path}: {hint}" + (problems if report.skipped else "")
            )
        if len(source.classes) > MAX_CLASSES:
            raise DataError(
                f"{cfg.path or cfg.source} names {len(source.classes)} classes, more than the "
                f"{MAX_CLASSES} a detector may have (first: {', '.join(source.classes[:3])}); "
                "check the class names file"
            )
        kept: list[ValidImage] = []
        seen: dict[str, str] = {}
        n_read = 0
        for raw in source.images:
            n_read += 1
            if raw.refused is None and raw.file_name in seen:
                report.skip_image(
                    raw.annotation,
                    DUPLICATE_ID,
                    f"image {raw.file_name} is already used by {seen[raw.file_name]}",
                    len(raw.boxes),
                )
                continue
            image = validate_image(raw, source.classes, report, source.root)
            if image is None:
                continue
            if image.file_name in seen:  # a converted name (x.tif.png) that a file has too
                report.skip_image(
                    raw.annotation,
                    DUPLICATE_ID,
                    f"image {image.file_name} is already used by {seen[image.file_name]}",
                    len(image.boxes),
                )
                continue
            seen[raw.file_name] = seen[image.file_name] = raw.annotation
            write_image(image, work)
            image.pixels = image.data = None  # written: do not hold every image in memory
            kept.append(image)
        if not kept:
            raise DataError(
                f"no valid image in {cfg.path or cfg.source} ({n_read} listed, "
                f"{len(report.skipped)} problems, e.g. "
                f"{_first_problem(report)}); check data.path and data.source"
            )
        if not any(im.boxes for im in kept):
            box_problems = [r for r in report.skipped if r["kind"] == "box"]
            raise DataError(
                f"no boxes in {cfg.path or cfg.source}: {len(kept)} images but not one box was "
                f"found (looked for {source.labels_at or 'annotations'}"
                + (
                    f"; {len(box_problems)} boxes not kept, e.g. {box_problems[0]['detail']}"
                    if box_problems
                    else ""
                )
                + "); check the labels and data.source"
            )
        kept.sort(key=lambda im: im.file_name)
        assigned, origin, same_as = assign_splits(
            [im.file_name for im in kept],
            [im.split for im in kept],
            cfg.val_ratio,
            cfg.test_ratio,
            cfg.seed,
            source.splits,
        )
        splits: dict[str, dict[str, Any]] = {}
        next_ann = 1
        for split in SPLITS:
            if split in same_as:
                splits[split] = splits[same_as[split]]
                continue
            idx = [i for i, s in enumerate(assigned) if s == split]
            if not idx and origin[split] == "source":
                raise DataError(
                    f"split '{split}' is empty: the source defines it but none of its images "
                    f"could be kept; fix the images listed in its split file (see the report "
                    f"problems, first: {_first_problem(report)})"
                )
            if not idx:
                raise DataError(
                    f"split '{split}' is empty after preparing {cfg.path or cfg.source} "
                    f"({origin[split]}); add images to it in the source, or for a random "
                    f"split set data.{split}_ratio > 0 and provide more images"
                    if split != "train"
                    else "split 'train' is empty; lower data.val_ratio / data.test_ratio"
                )
            coco = coco_split(
                [kept[i] for i in idx], [i + 1 for i in idx], next_ann, source.classes
            )
            next_ann += len(coco["annotations"])
            splits[split] = coco
        for split, coco in splits.items():
            write_json(work / f"{split}.json", coco)
        write_json(work / "classes.json", source.classes)
        stats = compute_stats(splits, source.classes)
        plot_stats(splits, source.classes, stats, work / "stats.png")
        counts = {
            "images_read": n_read,
            "images_kept": len(kept),
            "images": {s: len(c["images"]) for s, c in splits.items()},
            "boxes": {s: len(c["annotations"]) for s, c in splits.items()},
            **report.counts(),
        }
        write_json(
            work / "report.json",
            {
                "name": cfg.name,
                "source": {"format": cfg.source, "path": cfg.path, **source.description},
                "classes": source.classes,
                "splits": origin,
                "counts": counts,
                "stats": stats,
                **report.as_dict(),
            },
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out_dir.exists() or out_dir.is_symlink():
        require_replaceable(out_dir)  # again: the folder may have changed meanwhile
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    return PrepareResult(out_dir, counts, source.classes, origin)


def is_prepared_dataset(folder: Path) -> bool:
    """Whether ``folder`` is a dataset ``ssd prepare`` wrote: its ``report.json`` (written
    last, into every prepared dataset) names the dataset, its source and its counts."""
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(report, dict) and {"name", "source", "classes", "counts"} <= report.keys()


def require_replaceable(out_dir: Path) -> None:
    """Nothing, when ``ssd prepare`` may replace ``out_dir``: absent, empty, or a prepared
    dataset (:func:`is_prepared_dataset`); else a :class:`DataError`: a folder of someone
    else's files is never deleted."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise DataError(
            f"{out_dir} is a link or a file, not a prepared dataset; ssd prepare replaces only "
            "what it wrote: remove it, or choose another data.name / data.prepared_root"
        )
    if not out_dir.exists() or not any(out_dir.iterdir()) or is_prepared_dataset(out_dir):
        return
    raise DataError(
        f"{out_dir} holds files ssd prepare did not write (no report.json of a prepared "
        "dataset); nothing was changed: choose another data.name or data.prepared_root, or "
        "move those files away"
    )


def _first_problem(report: Report) -> str:
    if not report.skipped:
        return "none recorded"
    first = report.skipped[0]
    return f"{first['file']}: {first['detail']}"


def summary(
    out_dir: Path,
    counts: dict[str, Any],
    classes: list[str],
    origin: dict[str, str] | None = None,
) -> str:
    """The counts printed at the end of a run, with how each split was made."""
    shown = ", ".join(classes[:12]) + (f", ... ({len(classes) - 12} more)" if len(classes) > 12 else "")
    lines = [
        f"prepared {out_dir}: {counts['images_kept']} of {counts['images_read']} images, "
        f"{len(classes)} classes ({shown})"
    ]
    for split in SPLITS:
        how = ""
        if origin:
            how = "  " + {
                "source": "as the source splits it",
                "the rest": "the images left",
                "source + rest": "as the source splits it, plus the images in no split",
            }.get(origin[split], origin[split])
        lines.append(
            f"  {split:<5} {counts['images'][split]:>6} images {counts['boxes'][split]:>7} boxes{how}"
        )
    for kind in ("skipped", "fixed"):
        items = counts[kind]
        total = sum(items.values())
        detail = ", ".join(f"{k} {v}" for k, v in items.items()) if items else "none"
        lost = counts.get("boxes_in_skipped_images", 0) if kind == "skipped" else 0
        extra = f"; {lost} box{'es' if lost != 1 else ''} went with the skipped images" if lost else ""
        lines.append(f"  {kind}: {total} ({detail}){extra}")
    notes = counts.get("notes") or {}
    if notes:
        lines.append("  notes: " + ", ".join(f"{n} {what}" for what, n in notes.items()))
    if counts["skipped"] or counts["fixed"]:
        lines.append(f"  details: {out_dir / 'report.json'}")
    return "\n".join(lines)
