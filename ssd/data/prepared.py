"""The one reader of a prepared dataset (``data/prepared/<name>/``, written by ``ssd prepare``).

:class:`PreparedSplit` parses ``<split>.json`` (COCO: ``images``, ``annotations`` with
``bbox [x, y, w, h]`` in pixels, ``category_id`` 1..C, ``difficult`` 0/1, ``categories``) and
``classes.json`` once; training, evaluation, tracking, the registry and FiftyOne all take
the loaded object. The COCO size buckets (:func:`size_of`) are defined here too, once.

The split file is not trusted further than the source data is (it may be edited, or pulled
from a remote): every ``file_name`` must be a relative name without ``..`` (checked at
load), and an image is read only if the file opened lies inside the prepared dataset (the
root rule of :class:`~ssd.data.safety.DatasetRoot`, opened once).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssd.config import MAX_CLASSES
from ssd.errors import DataError
from ssd.data.images import ImageReadError, read_image
from ssd.data.safety import DatasetRoot, UnsafePath

if TYPE_CHECKING:
    from torch import Tensor

SPLITS: tuple[str, str, str] = ("train", "val", "test")

# COCO's object sizes by area in pixels² (pycocotools ``Params.areaRng``: small [0, 32²],
# medium [32², 96²], large [96², 1e10]). pycocotools' ranges are closed, so an object of
# area exactly 32² (96²) counts in both neighbouring ranges there; here it is given the
# first range that holds it (small, resp. medium), so every object has one size.
SIZES: tuple[str, str, str] = ("small", "medium", "large")
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, float("inf")),
}


def size_of(area: float) -> str:
    """COCO size name of an object of ``area`` pixels² (small ≤ 32² < medium ≤ 96² < large)."""
    if area <= SIZE_RANGES["small"][1]:
        return "small"
    if area <= SIZE_RANGES["medium"][1]:
        return "medium"
    return "large"


def outside_name(name: Any) -> bool:
    """Whether an image's ``file_name`` could name a file outside its dataset folder: not a
    string, empty, absolute (``/x``, ``C:``, ``~``), with a NUL, or with a ``..`` part."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return True
    if name.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[\\/]", name)


def annotation_area(ann: dict[str, Any]) -> float:
    """The area pycocotools uses for an annotation: its ``area`` field, else ``w * h``."""
    if "area" in ann:
        return float(ann["area"])
    return float(ann["bbox"][2]) * float(ann["bbox"][3])


@dataclass
class PreparedSplit:
    """One split of a prepared dataset, parsed once.

    Attributes:
        name: ``train``, ``val`` or ``test``.
        root: the prepared dataset folder; ``root / image["file_name"]`` is the image file.
        dataset: the COCO dict as written (``images``, ``annotations``, ``categories``).
        class_names: names in label order (label ``i`` / ``category_id`` ``i`` is
            ``class_names[i - 1]``).
    """

    name: str
    root: Path
    dataset: dict[str, Any]
    class_names: list[str]
    _by_image: dict[Any, list[dict[str, Any]]] | None = field(default=None, repr=False)
    _rule: DatasetRoot | None = field(default=None, repr=False)

    @classmethod
    def load(cls, prepared_dir: str | Path, split: str, allow_empty: bool = False) -> PreparedSplit:
        """Load ``<prepared_dir>/<split>.json`` and ``classes.json``.

        Raises:
            DataError: the folder or the split file is missing or unreadable, the split has
                no images (unless ``allow_empty``), or ``classes.json`` disagrees with it.
        """
        root = Path(prepared_dir)
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        if not root.is_dir():
            raise DataError(
                f"prepared dataset '{root}' does not exist; run `ssd prepare` first "
                "(or pass --set data.name=NAME)"
            )
        path = root / f"{split}.json"
        if not path.is_file():
            present = sorted(p.stem for p in root.glob("*.json") if p.stem in SPLITS)
            raise DataError(
                f"split '{split}' not found: {path} is missing (splits present: "
                f"{', '.join(present) or 'none'}); run `ssd prepare`"
            )
        dataset = _read_json(path)
        if not isinstance(dataset, dict) or not all(
            isinstance(dataset.get(k), list) for k in ("images", "annotations", "categories")
        ):
            raise DataError(
                f"{path} is not a COCO file (needs images, annotations, categories lists)"
            )
        if not dataset["images"] and not allow_empty:
            raise DataError(f"split '{split}' in {root} is empty: {path} lists no images")
        for image in dataset["images"]:
            if not isinstance(image, dict):
                raise DataError(f"{path} is not a COCO file: an entry of images is not an object")
            if outside_name(image.get("file_name")):
                shown = repr(image.get("file_name"))[:200]
                raise DataError(
                    f"{path}: image {str(image.get('id'))[:40]} has file_name {shown}, which "
                    "would be read from outside the prepared dataset (absolute, or climbing "
                    "out with '..'); refused: the file was changed after `ssd prepare`, run it "
                    "again"
                )
        if len(dataset["categories"]) > MAX_CLASSES:
            raise DataError(
                f"{path} lists {len(dataset['categories'])} categories, more than the "
                f"{MAX_CLASSES} a detector may have; run `ssd prepare` again"
            )
        categories = sorted(dataset["categories"], key=lambda c: c["id"])
        names = [str(c["name"]) for c in categories]
        if [c["id"] for c in categories] != list(range(1, len(categories) + 1)):
            raise DataError(
                f"{path}: category ids must be 1..C, got {[c['id'] for c in categories]}"
            )
        classes_file = root / "classes.json"
        if classes_file.is_file():
            listed = _read_json(classes_file)
            if not isinstance(listed, list) or [str(n) for n in listed] != names:
                raise DataError(
                    f"{classes_file} lists {listed} but {path} has categories {names}; "
                    "re-run `ssd prepare`"
                )
        return cls(name=split, root=root, dataset=dataset, class_names=names)

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.dataset["images"]  # type: ignore[no-any-return]

    @property
    def annotations(self) -> list[dict[str, Any]]:
        return self.dataset["annotations"]  # type: ignore[no-any-return]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_path(self, image: dict[str, Any]) -> Path:
        """The file of an entry of :attr:`images`."""
        return self.root / str(image["file_name"])

    def read_image(self, image: dict[str, Any]) -> Tensor:
        """The pixels of an entry of :attr:`images` as RGB uint8 ``[3, H, W]``, read by the one
        image reader (:func:`ssd.data.images.read_image`) from the file opened once inside the
        dataset folder; a file that cannot be read, or leads outside (changed since ``ssd
        prepare``), is a :class:`DataError` naming it."""
        path = self.image_path(image)
        if self._rule is None:
            self._rule = DatasetRoot(self.root, "the prepared dataset")
        try:
            return read_image(self._rule.read_file(path))
        except UnsafePath as err:
            raise DataError(f"image {err}: run `ssd prepare` again") from None
        except OSError as err:
            raise DataError(f"{path}: {err.strerror or err}; run `ssd prepare` again") from None
        except ImageReadError as err:
            raise DataError(f"{path}: {err}; run `ssd prepare` again") from None

    def annotations_of(self, image_id: Any) -> list[dict[str, Any]]:
        """The annotations of one image, in file order."""
        if self._by_image is None:
            by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for ann in self.annotations:
                by_image[ann["image_id"]].append(ann)
            self._by_image = dict(by_image)
        return self._by_image.get(image_id, [])

    def example_image(self) -> Path:
        """The first image's file (an input example for a logged model)."""
        return self.image_path(self.images[0])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DataError(f"{path} cannot be read as JSON: {str(err)[:200]}") from None
