"""Starting a detector for a user's classes from the COCO detector (fine-tuning).

The backbone and extra layers load as pretrained backbone weights
(``model.backbone_weights: auto`` of ``mobilenet_v2``). The heads are reused too when the
model has the COCO detector's default boxes per location (``model.priors.layout: tf`` with
its scales, ``model.head: conv``): the box head whole (its offsets are per default box, and a
box's shape is the same at any input size), the class head row by row: per default box, the
background row and, for each of the user's classes COCO has by name
(:func:`ssd.model.coco.classes.match_coco`), that class's row. The other classes' rows keep
their fresh initialisation. The COCO detector was trained with a sigmoid per class, ours with
a softmax over background and classes: the rows are a start, fine-tuning adapts them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ssd.model.coco.classes import NUM_CLASSES, match_coco
from ssd.model.coco.convert import MODEL_CONFIG, coco_state
from ssd.model.network import SSD

COCO_BOXES_PER_LOCATION = [3, 6, 6, 6, 6, 6]  # TF's layout: reduced first map


def heads_fit(model: SSD, layout: str, scales: tuple[float, float]) -> str | None:
    """None when ``model``'s heads can take the COCO detector's, else why not."""
    coco = MODEL_CONFIG.priors
    if layout != "tf" or scales != (coco.min_scale, coco.max_scale):
        return (
            "its default boxes are not the COCO detector's (model.priors.layout tf, "
            f"min_scale {coco.min_scale}, max_scale {coco.max_scale})"
        )
    if model.head.boxes_per_location != COCO_BOXES_PER_LOCATION:
        return f"it has {model.head.boxes_per_location} boxes per location"
    if any(not isinstance(c, torch.nn.Conv2d) for c in model.head.cls):
        return "its head is not the COCO detector's 3x3 convolutions (model.head: conv)"
    return None


@torch.no_grad()
def init_heads_from_coco(
    model: SSD, class_names: Sequence[str], layout: str, scales: tuple[float, float]
) -> str:
    """Copy the COCO detector's heads into ``model`` as the module docstring says; returns
    what was done, for the log (the classes kept, or why the heads start fresh)."""
    why_not = heads_fit(model, layout, scales)
    if why_not is not None:
        return f"heads start fresh: {why_not}"
    state = coco_state()
    matched = match_coco(class_names)
    c1, coco1 = len(class_names) + 1, NUM_CLASSES + 1
    for m, k in enumerate(model.head.boxes_per_location):
        box, cls = model.head.box[m], model.head.cls[m]
        assert isinstance(box, torch.nn.Conv2d) and isinstance(cls, torch.nn.Conv2d)
        box.weight.copy_(state[f"head.box.{m}.weight"])
        assert box.bias is not None and cls.bias is not None
        box.bias.copy_(state[f"head.box.{m}.bias"])
        weight, bias = state[f"head.cls.{m}.weight"], state[f"head.cls.{m}.bias"]
        for a in range(k):
            pairs = [(0, 0)] + [(i + 1, label) for i, (label, _) in matched.items()]
            for ours, theirs in pairs:
                cls.weight[a * c1 + ours] = weight[a * coco1 + theirs]
                cls.bias[a * c1 + ours] = bias[a * coco1 + theirs]
    if not matched:
        return f"box head from COCO; no class of {list(class_names)} is a COCO class by name"
    kept = ", ".join(
        name if name == coco_name else f"{name} (COCO {coco_name})"
        for name, (_, coco_name) in ((class_names[i], v) for i, v in sorted(matched.items()))
    )
    return (
        f"box head from COCO; class rows kept for {len(matched)} of {len(class_names)} "
        f"classes: {kept}"
    )
