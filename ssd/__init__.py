"""SSD: Single Shot MultiBox Detector (Liu et al., arXiv 1512.02325) as a small library.

The library runs without any MLOps tool: the model, loss, data and metric code import
only torch, torchvision and the scientific stack. Integrations (MLflow, Prefect,
FiftyOne) live at the edge and are called by the CLI and the flows.
"""

__version__ = "0.1.0"
