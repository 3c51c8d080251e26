"""Exporting a detector to ONNX or TorchScript, with its metadata, for use without this package.

The exported graph is :class:`ExportWrapper`: the network, the softmax and the box decoding.

- Input ``images``: float32 ``[N, 3, S, S]``, RGB in [0, 1], each image resized to ``S x S``
  (bilinear with antialias, no letterbox; see :func:`ssd.infer.detector.preprocess`). The
  ImageNet normalisation is inside the graph. ``N`` is dynamic.
- Output ``boxes``: ``[N, A, 4]`` (x1, y1, x2, y2) in the pixels of the ``S x S`` input,
  clipped to it. Multiply x by ``W / S`` and y by ``H / S`` for an ``H x W`` image.
- Output ``scores``: ``[N, A, C]`` softmax class probabilities without the background
  column; column ``j`` is class ``j + 1``, named ``class_names[j]``.

**Non-maximum suppression is left to the caller** (it is not in the graph): apply the
per-class top-k, score threshold and NMS of :mod:`ssd.model.postprocess`, for example with
:func:`postprocess_exported`, which reproduces the eager :class:`~ssd.infer.detector.Detector`'s
detections from these two outputs. The post-processing settings (the ``postprocess``
section at export time) travel in the metadata, so a consumer needs nothing else.

Metadata: ONNX ``metadata_props`` (key ``ssd.json`` holds everything as JSON; ``class_names``,
``input_size`` and ``nms`` are also readable on their own; onnxruntime shows them in
``session.get_modelmeta().custom_metadata_map``) and, for TorchScript, the extra file
``ssd.json`` (``torch.jit.load(path, _extra_files={"ssd.json": ""})``). Read them back with
:func:`read_onnx_metadata` and :func:`load_torchscript`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd.config import ModelConfig, PostprocessConfig
from ssd.errors import ExportError
from ssd.model.boxes import decode
from ssd.model.network import SSD
from ssd.model.postprocess import select_detections
from ssd.model.weights import load_model

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
EXPORT_FORMAT_VERSION = 1
META_KEY = "ssd.json"
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["boxes", "scores"]


class ExportWrapper(nn.Module):
    """``images [N, 3, S, S]`` in [0, 1] -> ``(boxes [N, A, 4] input pixels, scores [N, A, C])``.

    Boxes are (x1, y1, x2, y2), decoded against the model's default boxes and clipped to
    the ``S x S`` input; scores are probabilities without the background class (softmax, or a
    sigmoid per class for a model with ``scoring == "sigmoid"``).
    """

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model
        self.variances = model.variances
        self.size = float(model.input_size)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, offsets = self.model(images)
        boxes = decode(offsets, self.model.priors, self.variances) * self.size
        boxes = boxes.clamp(min=0.0, max=self.size)
        if self.model.scoring == "sigmoid":
            return boxes, torch.sigmoid(logits[..., 1:])
        return boxes, F.softmax(logits, dim=-1)[..., 1:]


def export_metadata(
    model: SSD,
    cfg: ModelConfig,
    class_names: Sequence[str],
    postprocess: PostprocessConfig | None = None,
) -> dict[str, Any]:
    """What a consumer needs besides the graph: classes, input size, post-processing settings
    (``postprocess``, None = the paper's)."""
    post = postprocess or PostprocessConfig()
    return {
        "format": "ssd-export",
        "format_version": EXPORT_FORMAT_VERSION,
        "class_names": list(class_names),
        "input_size": int(model.input_size),
        "backbone": cfg.backbone,
        "num_priors": int(model.priors.shape[0]),
        "input": "images: float32 [N, 3, S, S], RGB in [0, 1], resized to S x S "
        "(bilinear, antialias, no letterbox); normalisation is inside the graph",
        "outputs": "boxes: [N, A, 4] x1,y1,x2,y2 in input pixels (scale by W/S, H/S); "
        f"scores: [N, A, C] {model.scoring} without background, column j = class_names[j]",
        "nms": "caller",
        "score_threshold": post.score_threshold,
        "nms_threshold": post.nms_threshold,
        "candidates_per_class": post.candidates_per_class,
        "detections_per_image": post.detections_per_image,
        "detect_score_threshold": post.detect_score_threshold,
    }


def _cpu_wrapper(model: SSD, channels_last: bool = False) -> ExportWrapper:
    """A float32 CPU copy of ``model`` in eval mode, wrapped (the caller's model is untouched)."""
    clone = copy.deepcopy(model).float().eval().to("cpu")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return ExportWrapper(clone.to(memory_format=fmt)).eval()


def _example(model: SSD, batch: int = 2) -> Tensor:
    g = torch.Generator().manual_seed(0)
    s = model.input_size
    return torch.rand(batch, 3, s, s, generator=g)


def export_onnx(
    model: SSD,
    cfg: ModelConfig,
    class_names: Sequence[str],
    out: str | Path,
    dynamic_batch: bool = True,
    postprocess: PostprocessConfig | None = None,
) -> Path:
    """Write an ONNX file (single file, weights inside) with the metadata in ``metadata_props``.

    Uses the ``torch.export``-based exporter (``dynamo=True``); the batch axis is dynamic.
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _cpu_wrapper(model)
    dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # exporter chatter: progress lines, deprecations
        program = torch.onnx.export(
            wrapper,
            (_example(model),),
            dynamo=True,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_shapes=dynamic,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    meta = export_metadata(model, cfg, class_names, postprocess)
    props = {
        META_KEY: json.dumps(meta),
        "class_names": json.dumps(meta["class_names"]),
        "input_size": str(meta["input_size"]),
        "nms": "caller: apply per-class top-k, score threshold and NMS to (boxes, scores)",
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "SSD detector: network + softmax + box decoding; NMS left to the caller"
    tmp = out.with_name(out.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(out)
    return out


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata dict written by :func:`export_onnx`.

    Without this package: ``json.loads(onnxruntime.InferenceSession(path)
    .get_modelmeta().custom_metadata_map["ssd.json"])``.
    """
    import onnx

    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as err:
        raise ExportError(f"cannot read ONNX file '{path}': {err}") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise ExportError(f"'{path}' has no '{META_KEY}' metadata; was it written by ssd export?")
    meta: dict[str, Any] = json.loads(props[META_KEY])
    return meta


def export_torchscript(
    model: SSD,
    cfg: ModelConfig,
    class_names: Sequence[str],
    out: str | Path,
    postprocess: PostprocessConfig | None = None,
) -> Path:
    """Write a traced, frozen TorchScript module with the metadata as the extra file ``ssd.json``.

    The batch size is free; the input must be ``S x S`` (as for ONNX).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # channels_last weights make the traced convolutions run NHWC (faster on CPU and GPU);
    # freezing inlines the weights and folds BatchNorm into the convolutions.
    wrapper = _cpu_wrapper(model, channels_last=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings for the static "same" padding sizes
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, (_example(model),), check_trace=False)
            traced = torch.jit.freeze(traced.eval())
    meta = json.dumps(export_metadata(model, cfg, class_names, postprocess))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
        torch.jit.save(traced, str(tmp), _extra_files={META_KEY: meta})
    tmp.replace(out)
    return out


def load_torchscript(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a module written by :func:`export_torchscript` and its metadata."""
    extra = {META_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as err:
        raise ExportError(f"cannot read TorchScript file '{path}': {err}") from None
    if not extra[META_KEY]:
        raise ExportError(f"'{path}' has no '{META_KEY}' metadata; was it written by ssd export?")
    return module.eval(), json.loads(extra[META_KEY])


def export_detector(
    detector_path: str | Path,
    fmt: ExportFormat,
    out: str | Path,
    postprocess: PostprocessConfig | None = None,
) -> Path:
    """Export the detector saved at ``detector_path`` (see :mod:`ssd.model.weights`) to ``out``,
    with the inference settings ``postprocess`` (None: the paper's) in its metadata.

    ``ssd export`` writes to ``exports/<data.name>/`` by default (:class:`ssd.config.Layout`),
    never into the detector's folder, which is a DVC stage's output.
    """

    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    model, cfg, names = load_model(detector_path)
    if fmt == "onnx":
        return export_onnx(model, cfg, names, out, postprocess=postprocess)
    return export_torchscript(model, cfg, names, out, postprocess=postprocess)


def postprocess_exported(
    boxes: Tensor | np.ndarray,
    scores: Tensor | np.ndarray,
    input_size: int,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    candidates_per_class: int = 400,
    detections_per_image: int = 200,
) -> list[dict[str, Tensor]]:
    """Reference post-processing of the exported outputs, the same as :mod:`ssd.model.postprocess`.

    Per image and class: the ``candidates_per_class`` best scores above ``score_threshold``,
    per-class NMS at ``nms_threshold``, then the best ``detections_per_image``.

    Args:
        boxes: ``[N, A, 4]`` exported boxes (input pixels).
        scores: ``[N, A, C]`` exported scores.
        input_size: ``S`` (metadata ``input_size``).
        image_sizes: ``(H, W)`` of each original image; boxes are rescaled to them
            (None: stay in input pixels).

    Returns:
        Per image ``{boxes [K, 4], scores [K], labels [K] in 1..C}``, by decreasing score.
    """
    b = torch.as_tensor(boxes, dtype=torch.float32)
    s = torch.as_tensor(scores, dtype=torch.float32)
    n = s.shape[0]
    if image_sizes is not None:
        if len(image_sizes) != n:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {n}")
        wh = torch.tensor([[w, h, w, h] for h, w in image_sizes], dtype=torch.float32)
        b = torch.minimum((b * (wh / input_size)[:, None, :]).clamp(min=0), wh[:, None, :])

    return select_detections(
        b, s, score_threshold, nms_threshold, candidates_per_class, detections_per_image
    )
