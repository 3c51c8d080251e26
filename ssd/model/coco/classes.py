"""COCO's class names, and a user's classes matched to them by name.

The converted COCO detector's label ``k`` (1..90) is COCO category id ``k``; ids COCO leaves
unused are named ``"N/A"``. The names are torchvision's (its COCO detection weights' meta),
not typed again here. A user's class matches a COCO class when the names agree ignoring case,
spaces, ``_`` and ``-`` (``diningtable`` = ``dining table``), or through the VOC <-> COCO
synonyms below (VOC 2007's class names against COCO 2017's).
"""

from __future__ import annotations

from collections.abc import Sequence

NUM_CLASSES = 90  # COCO category ids 1..90 (80 used); TF's class 0 is the background

# Pascal VOC's names for COCO classes (VOC devkit vs COCO 2017), plus two common ones.
SYNONYMS = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "tvmonitor": "tv",
    "sofa": "couch",
    "pedestrian": "person",
    "people": "person",
}


def coco_class_names() -> list[str]:
    """The 90 names of COCO category ids 1..90 ("N/A" for the 10 unused ids), torchvision's."""
    from torchvision.models.detection import SSD300_VGG16_Weights

    names = list(SSD300_VGG16_Weights.COCO_V1.meta["categories"])
    assert names[0] == "__background__" and len(names) == NUM_CLASSES + 1
    return names[1:]


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c not in " _-")


def match_coco(class_names: Sequence[str]) -> dict[int, tuple[int, str]]:
    """``{user class index (0-based): (COCO label 1..90, COCO name)}`` for the user's classes
    COCO has, by name (see the module docstring); classes COCO lacks are left out."""
    coco = {_key(n): (k + 1, n) for k, n in enumerate(coco_class_names()) if n != "N/A"}
    found: dict[int, tuple[int, str]] = {}
    for i, name in enumerate(class_names):
        key = _key(name)
        key = _key(SYNONYMS.get(key, key))
        if key in coco:
            found[i] = coco[key]
    return found
