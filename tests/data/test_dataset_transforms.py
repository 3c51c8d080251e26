"""DetectionDataset, collate and the SSD augmentation: the contract the training loop uses."""

from __future__ import annotations

import pytest
import torch
from data_builders import good_voc, make_voc, voc_xml
from PIL import Image
from torchvision import tv_tensors

from ssd.config import AugmentConfig
from ssd.data.dataset import DetectionDataset, collate_detections
from ssd.data.prepare import prepare_dataset
from ssd.data.preview import write_augmentation_grid
from ssd.data.transforms import build_eval_transforms, build_train_transforms


@pytest.fixture
def prepared(tmp_path, prepare_cfg):
    root = good_voc(tmp_path / "voc", n=8)
    make_voc(root, {"bare": voc_xml("bare.jpg", [])})  # an image with no boxes
    return prepare_dataset(prepare_cfg("voc", root, val_ratio=0.1, test_ratio=0.1)).out_dir


def _all_splits(prepared, transforms=None):
    return [DetectionDataset(prepared, s, transforms) for s in ("train", "val", "test")]


def test_dataset_items(prepared):
    ds = DetectionDataset(prepared, "train")
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert len(ds) == len(ds.split.images)
    names = [im["file_name"] for im in ds.images]
    image, target = ds[next(i for i, n in enumerate(names) if n != "images/bare.jpg")]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert image.shape == (3, 48, 64)
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY and boxes.canvas_size == (48, 64)
    assert target["labels"].dtype == torch.int64 and target["difficult"].dtype == torch.bool
    assert target["labels"].tolist() == [1, 2] and target["difficult"].tolist() == [False, True]
    assert boxes.tolist() == [[4, 4, 30, 30], [20, 10, 60, 40]]
    assert target["orig_size"] == (48, 64) and isinstance(target["image_id"], int)


def test_image_without_boxes(prepared):
    bare = [
        (ds, i)
        for ds in _all_splits(prepared, build_train_transforms(64))
        for i, im in enumerate(ds.images)
        if im["file_name"] == "images/bare.jpg"
    ]
    ds, index = bare[0]
    image, target = ds[index]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert image.shape == (3, 64, 64)


def test_train_transforms_contract(prepared):
    torch.manual_seed(0)
    ds = DetectionDataset(prepared, "train", build_train_transforms(96, AugmentConfig()))
    for _ in range(6):
        for i in range(len(ds)):
            image, target = ds[i]
            assert image.dtype == torch.float32 and image.shape == (3, 96, 96)
            assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
            boxes = target["boxes"]
            assert boxes.canvas_size == (96, 96)
            n = boxes.shape[0]
            assert target["labels"].shape == (n,) and target["difficult"].shape == (n,)
            if n:
                assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
                assert boxes.min() >= 0 and boxes.max() <= 96
                # labels stay aligned with difficult: dog (2) is the difficult one
                assert (target["difficult"] == (target["labels"] == 2)).all()


def test_eval_transforms_and_collate(prepared):
    ds = DetectionDataset(prepared, "train", build_eval_transforms(32))
    names = [im["file_name"] for im in ds.images]
    image, target = ds[next(i for i, n in enumerate(names) if n != "images/bare.jpg")]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and image.max() <= 1
    assert torch.allclose(target["boxes"][1], torch.tensor([10.0, 20 / 3, 30.0, 80 / 3]))
    images, targets = collate_detections([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert len(targets) == 3 and targets[1]["image_id"] == ds.images[1]["id"]


def test_augmentation_grid_png(prepared, tmp_path):
    out = write_augmentation_grid(prepared, "train", 64, AugmentConfig(), tmp_path / "g.png", n=4)
    with Image.open(out) as im:
        assert im.size[0] > 64 * 2 and im.mode == "RGB"
    state = torch.random.get_rng_state()
    write_augmentation_grid(prepared, "train", 64, AugmentConfig(), tmp_path / "h.png", n=4)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert (tmp_path / "g.png").read_bytes() == (tmp_path / "h.png").read_bytes()
