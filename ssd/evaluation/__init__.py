"""Evaluation of detections on a prepared split: COCO and VOC metrics, TIDE error types,
default-box coverage, the F1 curve and confusion matrix (:mod:`.score`, pure), and the files
and plots ``ssd evaluate`` writes (:mod:`.report`). :mod:`.suggest` fits default boxes to
the training boxes. Detections come from anywhere (``ssd.infer.predict.detect_split`` runs
this project's detector). No MLOps tool is imported here.
"""
