"""The study database dropping its connections mid-study (a restart, a failover, an idle timeout): the
study goes on, nothing is left RUNNING, no trial is counted twice, and no traceback reaches the user.

    python -m pytest tests/search/test_storage_faults.py -q     # needs PostgreSQL on 127.0.0.1:5432
"""

from __future__ import annotations

import uuid

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from search.cli import main
from search.study.storage import _with_installed_driver, create_storage
from tests.search.conftest import FakeTraining
from tests.search.test_workers import _postgres_url

TERMINATE = sqlalchemy.text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND usename = current_user"
)


@pytest.mark.postgres
def test_connections_terminated_server_side_before_every_trial_cost_nothing(fake_study, tmp_path, capsys):
    url = _postgres_url()
    name = f"{fake_study}-{uuid.uuid4().hex[:8]}"  # the server outlives the test: a study name of its own
    spec_text = (tmp_path / "studies" / f"{fake_study}.yaml").read_text()
    (tmp_path / "studies" / f"{name}.yaml").write_text(spec_text)
    admin = sqlalchemy.create_engine(_with_installed_driver(url), isolation_level="AUTOCOMMIT")
    terminated = []

    def drop_every_connection(config):  # as the trial starts: its storage and heartbeat connections go
        with admin.connect() as connection:
            terminated.append(connection.execute(TERMINATE).scalar())
        return "ok"

    try:
        fake = FakeTraining(drop_every_connection)
        assert main(["study", name, "--storage", url, "--trials", "4"], train_fn=fake) == 0
        err = capsys.readouterr().err
        assert len(terminated) == 4 and all(n >= 1 for n in terminated), terminated
        assert "Traceback" not in err and "AssertionError" not in err
        study = optuna.load_study(study_name=name, storage=create_storage(name, url))
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3], "no trial lost or counted twice"
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
        assert sum("baseline" in t.user_attrs for t in study.trials) == 1
    finally:
        optuna.delete_study(study_name=name, storage=create_storage(name, url))
        admin.dispose()
