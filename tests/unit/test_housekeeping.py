"""pipeline/worker/housekeeping.py without a Redis: when a tick sweeps webhooks and when it runs the
exclusive chores (on an injected clock), a failed sweep kept from the rest, and the middleware's
thread saying a failure once and going on. The exclusive run's throttle and lock, on a real Redis,
are tests/integration/test_reconciler.py's."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from pipeline import outbox
from pipeline.settings import Settings
from pipeline.stores import Stores, open_stores
from pipeline.worker.housekeeping import Housekeeping, Runner


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    # Redis is never reached: redis-py connects on a first command, and these tests send none.
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/9", "UPLOAD_DIR": str(tmp_path),
                                  "WEBHOOK_SWEEP_SECONDS": "5", "RECONCILE_PERIOD_SECONDS": "30"})
    return open_stores(settings)


class Calls:
    """Stands in for the chores a tick starts, keeping when each was started."""

    def __init__(self, sweep_error: BaseException | None = None) -> None:
        self.sweeps: list[int] = []
        self.exclusive: list[float | None] = []
        self.sweep_error = sweep_error

    def sweep(self, stores: Stores) -> list[Any]:
        self.sweeps.append(1)
        if self.sweep_error is not None:
            raise self.sweep_error
        return []

    def run_exclusive(self, now: float | None = None, *, force: bool = False) -> None:
        self.exclusive.append(now)


def _runner(stores: Stores, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.setattr(outbox, "sweep", calls.sweep)
    runner = Runner(stores, send=lambda *args: None)
    monkeypatch.setattr(runner, "run_exclusive", calls.run_exclusive)
    return runner


def test_the_thread_wakes_as_often_as_the_more_frequent_chore(stores: Stores) -> None:
    assert Runner(stores, send=lambda *args: None).interval == 5.0


def test_webhooks_are_swept_every_sweep_period_and_the_rest_every_reconcile_period(
        stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls()
    runner = _runner(stores, calls, monkeypatch)
    timeline = []
    # A late tick (1012) moves the next sweep to 5 s after it, not back onto a 5 s grid.
    for now in (1000.0, 1001.0, 1004.9, 1005.0, 1012.0, 1016.9, 1030.0):
        runner.tick(now)
        timeline.append((now, len(calls.sweeps), len(calls.exclusive)))
    assert timeline == [(1000.0, 1, 1), (1001.0, 1, 1), (1004.9, 1, 1), (1005.0, 2, 1), (1012.0, 3, 1),
                        (1016.9, 3, 1), (1030.0, 4, 2)]
    assert calls.exclusive == [1000.0, 1030.0]  # given the tick's own clock


def test_a_sweep_that_fails_does_not_keep_the_reconciler_from_running(
        stores: Stores, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = Calls(sweep_error=ValueError("a receiver's bad answer"))
    runner = _runner(stores, calls, monkeypatch)
    with caplog.at_level(logging.ERROR, logger="pipeline.worker.housekeeping"):
        runner.tick(50.0)
    assert calls.exclusive == [50.0] and "webhook sweep failed" in caplog.text


def test_redis_failing_in_the_sweep_ends_the_tick(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(sweep_error=redis.ConnectionError("Redis went away"))
    runner = _runner(stores, calls, monkeypatch)
    with pytest.raises(redis.ConnectionError):
        runner.tick(50.0)
    assert calls.exclusive == []


class CountedStop(threading.Event):
    """A stop event whose waits return at once, keeping their timeouts; set after ``waits`` of them."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.waits, self.timeouts = waits, list[float | None]()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        if len(self.timeouts) >= self.waits:
            self.set()
        return self.is_set()


def test_a_failing_redis_is_said_once_and_the_thread_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    tries: list[int] = []

    def stores() -> Stores:
        tries.append(1)
        raise redis.ConnectionError("Redis is restarting")

    keeper = Housekeeping(stores)
    keeper._stop = stop = CountedStop(waits=3)
    with caplog.at_level(logging.INFO, logger="pipeline.worker.housekeeping"):
        keeper._run(StubBroker())
    assert len(tries) == 3 and stop.timeouts == [5.0, 5.0, 5.0]
    assert [r.getMessage() for r in caplog.records] == ["housekeeping failed: Redis is restarting"]


def test_once_it_works_again_it_says_so_and_ticks_at_the_runners_interval(
        stores: Stores, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    answers: list[BaseException | Stores] = [redis.ConnectionError("down"), stores]

    def stores_once_up() -> Stores:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    ticks: list[int] = []
    monkeypatch.setattr(Runner, "tick", lambda self, now=None: ticks.append(1))
    keeper = Housekeeping(stores_once_up)
    keeper._stop = stop = CountedStop(waits=3)
    with caplog.at_level(logging.INFO, logger="pipeline.worker.housekeeping"):
        keeper._run(StubBroker())
    assert len(ticks) == 2 and stop.timeouts == [5.0, 5.0, 5.0]  # the runner's interval is 5 s here too
    assert [r.getMessage() for r in caplog.records] == ["housekeeping failed: down", "housekeeping works again"]


def test_boot_starts_the_thread_and_shutdown_ends_it() -> None:
    def stores() -> Stores:
        raise redis.ConnectionError("no Redis in the unit tier")

    keeper = Housekeeping(stores)
    before = set(threading.enumerate())
    broker = StubBroker()
    keeper.after_worker_boot(broker, None)  # type: ignore[arg-type]
    (thread,) = [t for t in set(threading.enumerate()) - before if t.name == "housekeeping"]
    assert thread.daemon
    keeper.before_worker_shutdown(broker, None)  # type: ignore[arg-type]
    thread.join(timeout=10)
    assert not thread.is_alive()
