"""Data: turn a VOC / COCO / YOLO / synthetic input into one prepared COCO-format dataset
(``prepare.py``), then read it (``prepared.py``) for training (``dataset.py``,
``transforms.py``) and evaluation.

Prepared layout (``data/prepared/<name>/``)::

    images/<file>                     copies of the source images; PNG for generated ones and
                                      for those that are not plain 8-bit JPEG / PNG
                                      (<file>.png: BMP, TIFF, 16-bit, EXIF-rotated, ...)
    train.json, val.json, test.json   COCO: images, annotations (bbox [x, y, w, h] pixels,
                                      category_id 1..C, difficult 0/1), categories
    classes.json                      class names; index i <-> category_id i + 1 <-> label i + 1
    report.json                       skipped / fixed records, counts, statistics
    stats.png                         the statistics as plots

The package imports nothing eagerly: ``ssd prepare`` does not load the training side.
"""
