"""A trained checkpoint as an MLflow model: `predict` takes images and returns LaTeX strings.

    make train CONFIG=studies/exports/NAME.best.yaml     # logs the model, registers it as NAME-best
    python -m training predict --model models:/NAME-best/latest --images DIR --out results.txt
    mlflow models serve -m models:/NAME-best/latest --env-manager local -p 5001

The model is a pyfunc around `training.predict.Predictor`: the checkpoint travels as an artifact, and
with it the vocabulary, the image options and the pen-rendering options of the dataset it was trained on,
so a served model decodes what `predict --checkpoint` decodes. Its input is a table with an `image`
column: a file path the server can read, a base64-encoded PNG/JPEG (what a REST client sends), or pixels
((H, W) gray or (H, W, 3) colour). Its output is one space-tokenised LaTeX string per row ("" for an
input that cannot be read, as `predict` writes an empty line).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint"
EXAMPLE_SIZE = (32, 96)  # the input example: a blank strip, small enough for the model's metadata


class FormulaModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from training.predict import Predictor

        self.predictor = Predictor(Path(context.artifacts[CHECKPOINT]), device="auto")

    # no type hints: MLflow would read them as a schema of their own beside the logged signature
    def predict(self, context, model_input, params=None):
        inputs = [decode_image(value) for value in _images(model_input)]
        rows = self.predictor.predict(inputs)
        return [row.prediction for row in rows]


def _images(model_input: Any) -> list[Any]:
    if hasattr(model_input, "columns"):  # a pandas DataFrame, as MLflow's serving hands it over
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        return list(model_input[column])
    if isinstance(model_input, dict):
        return list(model_input.get("image", []))
    if isinstance(model_input, np.ndarray) and model_input.ndim in (2, 3) and model_input.dtype != object:
        return [model_input]  # one image's pixels
    return list(model_input)


def decode_image(value: Any) -> Path | np.ndarray:
    """A path, base64 image bytes or pixels -> what Predictor reads (a bad value becomes a path that does
    not exist, which Predictor reports as unreadable without failing the other rows)."""
    if isinstance(value, np.ndarray) or isinstance(value, list):
        return np.asarray(value)
    if isinstance(value, bytes):
        return _pixels(value)
    text = str(value)
    if Path(text).is_file():
        return Path(text)
    try:
        return _pixels(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return Path(text)


def _pixels(data: bytes) -> np.ndarray | Path:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError):
        return Path("<undecodable image bytes>")


def encode_png(pixels: np.ndarray) -> str:
    """Base64 PNG of gray pixels: what a REST client puts in the `image` column."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def log_formula_model(
    checkpoint: Path, *, registered_name: str | None = None, tags: dict[str, str] | None = None
) -> str:
    """Logs `checkpoint` as a pyfunc model into the active run (and registers it under
    `registered_name`, its version tagged with `tags`); returns the model's URI."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"image": [encode_png(np.full(EXAMPLE_SIZE, 255, dtype=np.uint8))]})
    signature = infer_signature(example, pd.Series(["x ^ { 2 }"], name="latex"))
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=FormulaModel(),
        artifacts={CHECKPOINT: str(checkpoint)},
        signature=signature,
        input_example=example,
        # this project's own environment: serving with --env-manager local needs no requirement list,
        # and inferring one would load the model and scan its imports
        pip_requirements=[],
        registered_model_name=registered_name,
    )
    if registered_name and info.registered_model_version is not None:
        client = mlflow.MlflowClient()
        for key, value in (tags or {}).items():
            client.set_model_version_tag(registered_name, str(info.registered_model_version), key, value)
    return info.model_uri


def predict_with_model(uri: str, paths: list[Path]) -> list[str]:
    """`python -m training predict --model URI`: the registered model's predictions for these files."""
    import pandas as pd

    from core.mlflow_store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    model = mlflow.pyfunc.load_model(uri)
    return list(model.predict(pd.DataFrame({"image": [str(p) for p in paths]})))
