"""Data: turn a VOC / COCO / YOLO / synthetic input into one prepared COCO-format dataset
(``prepare.py``), then read it for training and evaluation (``dataset.py``, ``transforms.py``).

Prepared layout (``data/prepared/<name>/``)::

    images/<file>                     copies of the source images (synthetic: PNG)
    train.json, val.json, test.json   COCO: images, annotations (bbox [x, y, w, h] pixels,
                                      category_id 1..C, difficult 0/1), categories
    classes.json                      class names; index i <-> category_id i + 1 <-> label i + 1
    report.json                       skipped / fixed records, counts, statistics
    stats.png                         the statistics as plots
"""

from ssd.data.dataset import DetectionDataset, collate_detections
from ssd.data.errors import DataError
from ssd.data.prepare import prepare_dataset
from ssd.data.transforms import build_eval_transforms, build_train_transforms

__all__ = [
    "DataError",
    "DetectionDataset",
    "build_eval_transforms",
    "build_train_transforms",
    "collate_detections",
    "prepare_dataset",
]
