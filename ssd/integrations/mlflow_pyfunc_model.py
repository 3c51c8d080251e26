"""The detector as an MLflow pyfunc model, logged "from code" (no cloudpickle).

MLflow executes this file when the model is loaded; ``set_model`` names the model object.
Input: a DataFrame with an ``image`` column of file paths or ``data:image/...;base64,``
URIs (or a list of them / HxWx3 uint8 arrays). Output: one row per detection with
``image, label, score, x1, y1, x2, y2`` in the image's pixels. The inference settings (the
``postprocess`` section when the model was logged) are its ``model_config``; the param
``score_threshold`` overrides which detections are returned, per call:
``model.predict(df, params={"score_threshold": 0.5})``.
"""

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SSDDetectorModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from ssd.config import PostprocessConfig
        from ssd.infer.detector import load_detector

        given = dict(context.model_config or {})  # postprocess.<key> (unprefixed before)
        settings = PostprocessConfig.model_validate(
            {k.removeprefix("postprocess."): v for k, v in given.items()}
        )
        if isinstance(settings.detect_score_threshold, str):  # resolved when registered
            settings = settings.model_copy(update={"detect_score_threshold": 0.3})
        self.detector = load_detector(
            context.artifacts["detector"], device="auto", postprocess=settings
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from ssd.integrations.pyfunc_io import detect_table

        threshold = (params or {}).get("score_threshold")
        return detect_table(
            self.detector,
            model_input,
            score_threshold=None if threshold is None else float(threshold),
        )


mlflow.models.set_model(SSDDetectorModel())
