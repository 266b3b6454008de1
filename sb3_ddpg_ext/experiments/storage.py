"""
Optuna storages shared by tuning workers: a journal file (the default, safe for several processes on one
machine or a shared file system) or a database URL (SQLite, PostgreSQL, MySQL: many machines).

Both record a heartbeat per running trial, so a trial left RUNNING by a killed worker is marked FAIL when
any worker next starts a trial. Optuna has heartbeats only for databases; :class:`HeartbeatJournalStorage`
gives the journal file the same behaviour through Optuna's own heartbeat interface.
"""

import pathlib
import time
import warnings

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sb3_ddpg_ext.common.validation import InvalidValueError

HEARTBEAT_KEY = "sb3_ddpg_ext:heartbeat"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """
    Optuna's ``JournalStorage`` with heartbeats, kept as a trial system attribute.

    :param backend: the journal backend (e.g. ``JournalFileBackend``)
    :param heartbeat_interval: seconds between two heartbeats of a running trial
    :param grace_period: a running trial without a heartbeat for this many seconds is stale
        (default: twice the interval, as Optuna's ``RDBStorage``)
    """

    def __init__(self, backend: JournalFileBackend, heartbeat_interval: int, grace_period: int | None = None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = 2 * heartbeat_interval if grace_period is None else grace_period

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [trial._trial_id for trial in running if now - _last_sign_of_life(trial, now) > self.grace_period]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None


def _last_sign_of_life(trial: optuna.trial.FrozenTrial, now: float) -> float:
    heartbeat = trial.system_attrs.get(HEARTBEAT_KEY)
    if isinstance(heartbeat, (int, float)):
        return float(heartbeat)
    return trial.datetime_start.timestamp() if trial.datetime_start is not None else now


def is_database_url(storage: str) -> bool:
    """Whether ``storage`` names a database (``dialect://...``) rather than a journal file."""
    return "://" in storage


def make_storage(
    storage: str | pathlib.Path,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
) -> BaseStorage:
    """
    The storage of a study.

    :param storage: a database URL for Optuna's ``RDBStorage`` (e.g. ``postgresql://user:pass@host/db``,
        ``sqlite:///study.db``), or the path of a journal file (created with its folder if missing)
    :param heartbeat_interval: seconds between heartbeats of a running trial
    :param grace_period: seconds without a heartbeat after which a running trial is failed
    """
    if heartbeat_interval < 1:
        raise InvalidValueError(f"`heartbeat_interval` must be >= 1 second, got {heartbeat_interval}")
    if grace_period is not None and grace_period < heartbeat_interval:
        raise InvalidValueError(f"`grace_period` must be >= heartbeat_interval={heartbeat_interval}, got {grace_period}")
    if isinstance(storage, str) and is_database_url(storage):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat arguments
                return RDBStorage(
                    storage,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    engine_kwargs={"pool_pre_ping": True},
                )
        except (ImportError, ModuleNotFoundError) as error:
            raise InvalidValueError(
                f"storage {storage!r} needs a database driver that is not installed ({error}); for PostgreSQL: "
                "pip install 'sb3-ddpg-ext[tune]'"
            ) from error
    path = pathlib.Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat_interval, grace_period)


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark the study's trials whose worker stopped sending heartbeats as FAIL (also done before every trial)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
