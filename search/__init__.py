"""Optuna studies over image-to-LaTeX models, logged to MLflow: `python -m search study NAME` (see cli.py).

spec.py (studies/<NAME>.yaml) -> space.py (sampling) -> objective.py (one trial through training.loop) ->
runner.py / workers.py (study, storage, processes) -> tracking.py (MLflow) -> export.py / report.py.
"""
