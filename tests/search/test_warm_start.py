"""Warm start from earlier studies (search/study/warm_start.py), with the fake training loop.

The earlier studies are written with Optuna directly: what matters here is which of their trials join the
new study's history and what that changes, not how they were trained.

python -m pytest tests/search/test_warm_start.py -q
"""

from __future__ import annotations

import math

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.cli import main
from search.spec.parse import load_spec
from search.study.storage import create_storage, journal_path
from search.study.studies import count_finished, load_existing, summary
from search.study.warm_start import FROM_ATTR, TOP_ATTR, distribution
from tests.search.conftest import FakeTraining

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # set_metric_names


def _write_spec(home, name, **changes):
    base = yaml.safe_load((home / "studies" / "base.yaml").read_text())
    (home / "studies" / f"{name}.yaml").write_text(yaml.safe_dump({**base, **changes}, sort_keys=False))


def _source(space, name, metric="val/avg_score", direction="maximize", extra=()):
    """A finished study over the fake space: transformer trials scored by how close lr is to 1e-2."""
    study = optuna.create_study(study_name=name, storage=create_storage(name), direction=direction)
    study.set_metric_names([metric])
    dists = {
        path: distribution(space[path]) for path in ("model.kind", "model.d_model", "model.nhead", "optim.lr")
    }
    for i, lr in enumerate([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 1e-1]):
        params = {"model.kind": "transformer", "model.d_model": 64, "model.nhead": 4, "optim.lr": lr}
        score = 80.0 - 15.0 * abs(math.log10(lr) + 2.0) + i * 1e-3
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=score))
    for state, params, dists_ in extra:
        value = 1.0 if state == TrialState.COMPLETE else None
        study.add_trial(
            optuna.trial.create_trial(state=state, params=params, distributions=dists_, value=value)
        )
    return study


@pytest.fixture
def sources(fake_study, isolated_home):
    spec_dir = isolated_home / "studies"
    base = yaml.safe_load((spec_dir / f"{fake_study}.yaml").read_text())
    base.pop("enqueue")
    base["budget"] = {"n_trials": 2, "max_epochs": 4}
    base["pruner"] = {"name": "none"}
    (spec_dir / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    space = {p.path: p for p in load_spec(spec_dir / "base.yaml").space}
    lr = {"optim.lr": distribution(space["optim.lr"])}
    foreign = {"model.dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}
    extra = [
        (TrialState.PRUNED, {"model.kind": "rnn", "model.decoder_hidden": 64, "optim.lr": 1e-3},
         {"model.kind": distribution(space["model.kind"]), "model.decoder_hidden": distribution(
             space["model.decoder_hidden"]), **lr}),
        (TrialState.FAIL, {"optim.lr": 1e-3}, lr),
        (TrialState.COMPLETE, {"model.kind": "rnn", "optim.lr": 1e-3, "model.dropout": 0.1},
         {"model.kind": distribution(space["model.kind"]), **lr, **foreign}),
        (TrialState.COMPLETE, {"model.kind": "rnn", "optim.lr": 0.5},
         {"model.kind": distribution(space["model.kind"]),
          "optim.lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}),
    ]  # fmt: skip
    _source(space, "src-good", extra=extra)
    _source(space, "src-loss", metric="val/loss", direction="minimize")
    return isolated_home


def _first_params(name):
    study = load_existing(name, None)
    own = [t for t in study.trials if FROM_ATTR not in t.user_attrs]
    return own[0].params


def test_a_warm_started_study_samples_differently_from_its_first_trial_and_counts_only_its_own(
    sources, capsys
):
    _write_spec(sources, "cold")
    _write_spec(sources, "control", warm_start={"from": ["src-loss"]})  # nothing fits: as cold
    _write_spec(sources, "warm", warm_start={"from": ["src-good", "src-loss"]})
    for name in ("cold", "control", "warm"):
        assert main(["study", name, "--trials", "1"], train_fn=FakeTraining()) == 0, name
    out = capsys.readouterr().out
    assert "warm start: 9 trial(s) from src-good, src-loss added to the history (11 skipped" in out
    assert _first_params("control") == _first_params("cold"), "same seed, no history: the same first draw"
    assert _first_params("warm") != _first_params("cold"), "TPE models the history from the first trial"

    warm = load_existing("warm", None)
    provenance = warm.user_attrs["warm_start"]
    assert provenance["from"] == ["src-good", "src-loss"] and provenance["added"] == 9
    assert provenance["skipped_why"] == {
        "not finished": 1,
        "a parameter this space does not search": 1,
        "a value outside this space": 1,
        "optimises val/loss": 8,
    }
    foreign = [t for t in warm.trials if FROM_ATTR in t.user_attrs]
    assert len(foreign) == 9 and {t.user_attrs[FROM_ATTR].split("#")[0] for t in foreign} == {"src-good"}
    assert all("config" not in t.user_attrs for t in foreign)
    assert count_finished(warm) == 1 and len(warm.trials) == 10
    # the budget of 2 counts its own trials only: one more runs
    assert main(["study", "warm"], train_fn=FakeTraining()) == 0
    warm = load_existing("warm", None)
    assert count_finished(warm) == 2 and len(warm.trials) == 11
    assert main(["report", "warm"]) == 0
    report = (sources / "studies" / "reports" / "warm.html").read_text()
    assert "<h2>warm start</h2>" in report and "src-good#4" in report


def test_top_k_runs_the_best_foreign_configs_first(sources):
    path = journal_path("src-good")
    _write_spec(sources, "topk", warm_start={"from": [f"{path}#src-good"], "top": 2})
    assert main(["study", "topk"], train_fn=FakeTraining()) == 0
    study = load_existing("topk", None)
    own = [t for t in study.trials if FROM_ATTR not in t.user_attrs]
    assert [t.user_attrs[TOP_ATTR] for t in own] == ["src-good#4", "src-good#5"]  # lr 1e-2, then 2e-2
    assert [t.params["optim.lr"] for t in own] == [1e-2, 2e-2]
    # its own run of the config is its best, not the foreign record (which scored higher there)
    assert summary(study)["best_trial"] == own[0].number
    assert max(t.value for t in study.trials if t.state == TrialState.COMPLETE) > own[0].value
    assert main(["export", "topk"]) == 0
    exported = (sources / "studies" / "exports" / "topk.best.yaml").read_text()
    assert f"# trial: {own[0].number}\n" in exported


def test_a_missing_source_is_one_line_and_leaves_no_study(sources, capsys):
    _write_spec(sources, "lost", warm_start={"from": ["no-such-study"]})
    assert main(["study", "lost"], train_fn=FakeTraining()) == 2
    err = capsys.readouterr().err
    assert "no study 'no-such-study'" in err and len(err.strip().splitlines()) == 1
    assert not journal_path("lost").exists()
