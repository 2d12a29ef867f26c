"""Optuna studies over image-to-LaTeX models, logged to MLflow: `python -m search study NAME` (cli.py).

Rooms by job, each importing only the rooms above it in this list (tests/core/test_layering.py):

    spec/      studies/<NAME>.yaml -> a typed space, constraints, objectives, the Pareto rule
    tracking   everything the search writes to MLflow (parent runs, trial runs, orphans, summaries)
    study/     a study in its storage: create/load, sampler and pruner, warm start, epoch budget,
               recovery of dead workers' trials, devices
    trial.py   the objective: one trial through training, reported and pruned every epoch
    results/   export, report, figures, replay: read what a study found
    run/       the worker loop, several workers, progress, the dashboard
    cli.py     `python -m search ...`
"""
