"""Where models logged before the MLflow code moved into training.mlflow_logging find their class: a
logged pyfunc model names `training.mlflow_model.FormulaModel`."""

from training.mlflow_logging import FormulaModel

__all__ = ["FormulaModel"]
