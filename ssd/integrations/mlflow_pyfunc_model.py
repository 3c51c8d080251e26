"""The detector as an MLflow pyfunc model, logged "from code" (no cloudpickle).

MLflow executes this file when the model is loaded; ``set_model`` names the model object.
Input: a DataFrame with an ``image`` column of file paths (or a list of paths / HxWx3 uint8
arrays). Output: one row per detection with ``image, label, score, x1, y1, x2, y2`` in the
image's pixels. The inference settings (the ``postprocess`` section when the model was
logged) are its ``model_config``.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class SSDDetectorModel(PythonModel):
    def load_context(self, context):
        from ssd.config import PostprocessConfig
        from ssd.inference import load_detector

        settings = PostprocessConfig.model_validate(dict(context.model_config or {}))
        self.detector = load_detector(
            context.artifacts["detector"], device="auto", postprocess=settings
        )

    def predict(self, context, model_input, params=None):
        from ssd.integrations.pyfunc_io import detect_table

        return detect_table(self.detector, model_input)


mlflow.models.set_model(SSDDetectorModel())
