"""Readers, one per input format. Each parses its format into :class:`SourceData`,
reporting what it cannot parse; the checks shared by all formats are in ``validate.py``."""

from __future__ import annotations

from pathlib import Path

from ssd.config import DataConfig
from ssd.errors import DataError
from ssd.data.records import SourceData
from ssd.data.report import Report
from ssd.data.sources.coco import read_coco
from ssd.data.sources.synthetic import read_synthetic
from ssd.data.sources.voc import read_voc
from ssd.data.sources.yolo import read_yolo
from ssd.data.safety import DatasetRoot, UnsafePath, check_name


def dataset_root(cfg: DataConfig) -> Path:
    """The input root (``data.path``, default ``data/raw/<name>``) as an existing folder, or a
    :class:`DataError` saying what to set."""
    try:
        check_name(cfg.path or "")
    except UnsafePath as err:
        raise DataError(f"data.path: {err}") from None
    root = cfg.source_dir
    where = f"data.path '{cfg.path}'" if cfg.path else f"'{root}' (data.path is not set)"
    try:
        exists = root.exists()
    except OSError as err:
        raise DataError(f"{where} cannot be used: {err.strerror or err}") from None
    if not exists:
        raise DataError(
            f"{where} does not exist; put the {cfg.source} dataset in data/raw/{cfg.name}/ "
            f"(and `dvc add data/raw/{cfg.name}`), or point data.path at it"
        )
    if not root.is_dir():
        raise DataError(f"{where} is not a folder; point data.path at the dataset root")
    return root


def read_source(cfg: DataConfig, report: Report) -> SourceData:
    """Dispatch on ``data.source``. Every file a reader reads lies inside ``data.path``
    (:class:`~ssd.data.safety.DatasetRoot`); a folder or option that leads outside stops
    with one message."""
    if cfg.source == "synthetic":
        return read_synthetic(num_images=cfg.num_images, image_size=cfg.image_size, seed=cfg.seed)
    root = DatasetRoot(dataset_root(cfg))
    try:
        if cfg.source == "voc":
            return read_voc(
                root,
                report,
                names_file=cfg.names_file,
                annotations_dir=cfg.annotations_dir,
                images_dir=cfg.images_dir,
            )
        if cfg.source == "coco":
            return read_coco(root, report, coco_json=cfg.coco_json, images_dir=cfg.images_dir)
        return read_yolo(root, report, names_file=cfg.names_file)
    except UnsafePath as err:
        raise DataError(str(err)) from None
