"""What a study tells a newcomer while it runs: the trial's line, the study's cost estimate after its first
epoch, and a pointer to the CPU profile when a GPU-sized spec runs without a GPU."""

from __future__ import annotations

import optuna

from search.run.study_progress import StudyProgress, cpu_note


def test_first_epoch_gives_an_upper_bound_for_the_rest_of_the_study(capsys):
    study = optuna.create_study()
    progress = StudyProgress(study, target=3, max_epochs=8)
    progress.tty = False  # as in a log file
    progress.trial_status("trial 0: epoch 1/8 done in 1:00", force=True, epoch_seconds=60.0)
    progress.trial_status("trial 0: epoch 2/8 done in 1:00", force=True, epoch_seconds=60.0)
    err = capsys.readouterr().err
    # 3 trials x 8 epochs x 60 s, said once, then the trial lines
    assert err.count("need up to 24:00 on this machine") == 1
    assert "trial 0: epoch 1/8" in err and "trial 0: epoch 2/8" in err
    progress.close()


def test_a_gpu_sized_spec_on_cpu_points_to_its_cpu_profile():
    note = cpu_note("transformer", gpus=[])
    assert note is not None and "make study NAME=transformer-cpu" in note
    assert cpu_note("transformer", gpus=["0"]) is None
    assert cpu_note("transformer-cpu", gpus=[]) is None
    assert cpu_note("smoke", gpus=[]) is None  # no smoke-cpu profile: nothing to point to


def test_several_workers_show_one_line_with_running_trials_and_time_left_and_a_line_per_trial(capsys):
    """What a study driven by workers in other processes shows (they share the study, not this process)."""
    study = optuna.create_study()
    before = study.ask()
    study.tell(before, 1.0)  # finished before this run: neither counted nor reported
    progress = StudyProgress(study, target=4)
    progress.tty = False
    running = [study.ask() for _ in range(3)]
    study.tell(running[0], 2.5)
    running[1].report(0.5, 1)
    study.tell(running[1], state=optuna.trial.TrialState.PRUNED)
    progress()
    err = capsys.readouterr().err
    assert f"trial {running[0].number} COMPLETE 2.5" in err
    assert f"trial {running[1].number} PRUNED 0.5 after 1 epoch(s)" in err  # its last report
    assert f"trial {before.number} " not in err
    status = [line for line in err.splitlines() if line.startswith("study ")][-1]
    assert "2/4 trials, 1 running" in status and "left at this pace" in status
    progress()  # nothing new: no repeated lines
    assert capsys.readouterr().err == ""
    progress.close()
