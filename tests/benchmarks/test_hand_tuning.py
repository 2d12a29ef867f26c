"""The equal-budget hand-tuning arm's written rule: the course's config placed in the CPU profile, and a
learning-rate sweep that spends the budget."""

from __future__ import annotations

import math

import pytest

from benchmarks.hand_tuning import course_params, hand_tuning_trials, lr_sweep, place_in_profile
from search.spec.parse import load_spec


@pytest.fixture(scope="module")
def profile():
    return load_spec("transformer-cpu")


def test_the_course_config_lands_inside_the_profile_by_the_rule(profile):
    course = course_params()
    placed = place_in_profile(course, profile)
    space = {d.path: d for d in profile.space}
    assert all(space[path].contains(value) for path, value in placed.items())
    # kept where the profile allows it
    for path in ("model.stage1", "model.stage2", "model.nhead", "optim.name", "augment.noise_prob"):
        assert placed[path] == course[path]
    assert placed["model.cut_after"] == 3  # 4 is out: the nearest choice
    assert placed["trainer.batch_size"] == 32  # 16 is out: the nearest choice
    assert placed["model.dropout"] == pytest.approx(0.3)  # 0.5 clipped to the profile's cap
    assert placed["schedule.name"] == "warmup_multistep"  # the same shape, with the profile's warmup
    assert placed["schedule.step_every"] == 5 and placed["schedule.gamma"] == 0.5  # its conditional knobs
    assert placed["schedule.warmup_epochs"] == 0.5  # not set by the course: the profile's lowest
    assert set(placed) == {d.path for d in profile.space}, "every searched parameter gets a value"


def test_the_sweep_spends_the_budget_at_full_fidelity_fast_end_first(profile):
    lrs = lr_sweep(profile, 32)
    lr = next(d for d in profile.space if d.path == "optim.lr")
    assert len(lrs) == 32 // profile.budget.max_epochs == 4
    assert lrs[0] == pytest.approx(lr.high) and lrs[-1] == pytest.approx(lr.low, rel=1e-3)
    ratios = [math.log(a / b) for a, b in zip(lrs, lrs[1:], strict=False)]
    assert max(ratios) - min(ratios) < 0.01, "evenly spaced on a log scale"
    trials = hand_tuning_trials(profile, 32)
    assert [t["params"]["optim.lr"] for t in trials] == lrs
    assert len({t["label"] for t in trials}) == len(trials)
    assert len(lr_sweep(profile, 7)) == 1  # less than one full trial still tries one rate
