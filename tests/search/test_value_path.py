"""How far a searched value travels: `optim.lr` from a study spec to torch's optimizer, through a real trial
of the smoke spec (issue 24: a value passes few hands and is checked once).

A hop is a function of the project on the call stack whenever the value itself is drawn, placed into the
config, type-checked, copied into the trial's stored config, or handed to the optimizer. The training loop
is the real one; the injected trainer stops it once the optimizer exists.
"""

from __future__ import annotations

import sys

import optuna
import pytest
import torch

from core.paths import REPO_ROOT
from core.typed_config import ConfigError
from search.spec.parse import SpecError, load_spec
from search.trial import TrialObjective
from training.config import load_train_config
from training.loop import train

LR = 0.00123456789  # a value no default or other parameter has, so the tracer follows this one
PACKAGES = tuple(str(REPO_ROOT / p) + "/" for p in ("core", "data_prep", "models", "training", "search"))
MAX_HOPS = 12  # at 96d447b: 19 (a lazy-import shim, a per-optimizer builder, a decode of every number, ...)


class _Stop(Exception):
    pass


class _StopAtStart:
    def on_train_start(self, config, info):  # the optimizer is built before the first epoch starts
        raise _Stop


def _project_stack(frame) -> list[str]:
    names = []
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith(PACKAGES) and "<" not in code.co_qualname:  # no comprehensions
            names.append(f"{code.co_filename[len(str(REPO_ROOT)) + 1 :]}:{code.co_qualname}")
        frame = frame.f_back
    return names


def _is_lr(value) -> bool:
    return type(value) is float and value == LR


def _trace_lr(objective: TrialObjective, trial: optuna.Trial) -> dict[str, None]:
    hops: dict[str, None] = {}
    built: list[bool] = []  # what the loop does with the config once the optimizer exists is not a hop

    def profile(frame, event, arg):
        if built:
            return
        if event == "call" and frame.f_code is torch.optim.Optimizer.__init__.__code__:
            if _is_lr(frame.f_locals["defaults"].get("lr")):
                hops.update(dict.fromkeys(_project_stack(frame)))
                built.append(True)
        elif event == "call" and frame.f_code.co_filename.startswith(PACKAGES):
            if any(_is_lr(v) for v in frame.f_locals.values()):  # the value itself is an argument
                hops.update(dict.fromkeys(_project_stack(frame)))
        elif event == "return" and _is_lr(arg) and frame.f_back is not None:
            if frame.f_back.f_code.co_filename.startswith(PACKAGES):  # drawn by Optuna, say, for the project
                hops.update(dict.fromkeys(_project_stack(frame)))

    sys.setprofile(profile)
    try:
        with pytest.raises(_Stop):
            objective(trial)
    finally:
        sys.setprofile(None)
    return hops


def test_the_learning_rate_reaches_the_optimizer_in_few_hops(isolated_home, tmp_path):
    spec = load_spec("smoke")
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"model.kind": "transformer", "model.cut_after": 2, "model.d_model": 32,
                         "model.nhead": 2, "model.num_layers": 1, "model.dim_feedforward": 64,
                         "optim.lr": LR})  # fmt: skip
    trial = study.ask()

    def train_until_the_optimizer(config, out_dir, *, callbacks, resume_from=None):
        return train(config, out_dir, callbacks=[*callbacks, _StopAtStart()], resume_from=resume_from)

    hops = _trace_lr(TrialObjective(spec, None, train_fn=train_until_the_optimizer), trial)
    names = [hop.split(":")[1] for hop in hops]
    # the path is whole: drawn, placed, type-checked, kept for export, built into the optimizer
    for step in ("suggest_params", "set_path", "_coerce", "to_dict", "build_optimizer"):
        assert step in names, (step, list(hops))
    assert len(hops) <= MAX_HOPS, "\n".join(hops)


def test_the_learning_rate_is_type_checked_and_bounds_checked_once_when_the_config_loads(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lr=-0\.001 must be > 0"):
        load_train_config({"optim": {"lr": -1e-3}})
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_train_config({"optim": {"lr": "fast"}})
    # a spec whose base has a bad rate fails when it loads, with the same message, before any trial runs
    text = (REPO_ROOT / "studies" / "smoke.yaml").read_text().replace(
        "  augment: {enabled: false}", "  augment: {enabled: false}\n  optim: {lr: 0.0}"
    )
    (tmp_path / "bad-lr.yaml").write_text(text)
    with pytest.raises(SpecError, match=r"optim\.lr=0\.0 must be > 0"):
        load_spec(tmp_path / "bad-lr.yaml")
