"""client/wait.py: following a job to its end on its event stream, polling its status once the stream
breaks, and giving up at the wait's deadline."""

from __future__ import annotations

import io
from collections.abc import Generator
from typing import Any

import pytest

from client import wait
from client.errors import UNREACHABLE, ApiError
from client.events import Event
from client.http import Client
from client.progress import Progress
from client.wait import JobEnded, WaitTimeout, number, wait_for_job

Stream = list[Event] | ApiError
Status = dict[str, Any] | ApiError


class Scripted(Client):
    """A Client whose event streams and status answers are given in advance, in order."""

    def __init__(self, streams: list[Stream], statuses: list[Status] | None = None) -> None:
        super().__init__("http://service.invalid")
        self.streams = streams
        self.statuses = statuses or []
        self.read_timeouts: list[float | None] = []
        self.closed = 0

    def events(self, task_id: str, *, read_timeout: float | None = None) -> Generator[Event, None, None]:
        self.read_timeouts.append(read_timeout)
        script = self.streams.pop(0)
        try:
            if isinstance(script, ApiError):
                raise script
            yield from script
        finally:
            self.closed += 1

    def status(self, task_id: str) -> dict[str, Any]:
        answer = self.statuses.pop(0)
        if isinstance(answer, ApiError):
            raise answer
        return answer


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wait, "POLL_INTERVAL", 0.0)


def lines() -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    progress = Progress(out)
    progress.set_task("t1")
    return progress, out


def test_the_end_event_of_a_completed_job_is_the_answer() -> None:
    client = Scripted([[Event("status", {"status": "queued"}), Event("status", {"status": "transcribing"}),
                        Event("segment", {"progress": 0.5}), Event("end", {"status": "completed", "task_id": "t1"}),
                        Event("segment", {"progress": 0.9})]])
    progress, out = lines()
    assert wait_for_job(client, "t1", progress, timeout=None) == {"status": "completed", "task_id": "t1"}
    assert out.getvalue() == "t1: queued\nt1: transcribing\nt1: completed\n"
    # The stream is closed once its end event is read, and waited on above the 15 s keep-alive.
    assert client.closed == 1 and client.read_timeouts == [40.0]


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_job_that_ends_otherwise_raises_with_its_summary(status: str) -> None:
    summary = {"status": status, "error": {"code": "worker_died"}}
    client = Scripted([[Event("end", summary)]])
    with pytest.raises(JobEnded) as ended:
        wait_for_job(client, "t1", lines()[0], timeout=None)
    assert ended.value.summary == summary and str(ended.value) == status


def test_a_stream_the_service_closed_early_is_subscribed_again() -> None:
    # The service ends long streams with a non-final end event: the job is still going.
    client = Scripted([[Event("end", {"status": "transcribing"})], [Event("end", {"status": "completed"})]])
    assert wait_for_job(client, "t1", lines()[0], timeout=None) == {"status": "completed"}
    assert client.streams == [] and client.closed == 2


@pytest.mark.parametrize("stream", [ApiError(None, UNREACHABLE, "gone"), ApiError(502, "http_502", "proxy"),
                                    [Event("status", {"status": "transcribing"})]],
                         ids=["unreachable", "bad-gateway", "no-end-event"])
def test_a_broken_stream_falls_back_to_polling(stream: Stream) -> None:
    client = Scripted([stream], [{"status": "transcribing", "progress": 0.4}, {"status": "completed", "n": 1}])
    progress, out = lines()
    assert wait_for_job(client, "t1", progress, timeout=None) == {"status": "completed", "n": 1}
    assert out.getvalue().splitlines()[-1] == "t1: completed"
    assert client.statuses == []


def test_a_job_the_service_does_not_know_is_not_polled() -> None:
    client = Scripted([ApiError(404, "not_found", "No such job.")], [{"status": "completed"}])
    with pytest.raises(ApiError) as caught:
        wait_for_job(client, "t1", lines()[0], timeout=None)
    assert caught.value.status == 404 and client.statuses == [{"status": "completed"}]


def test_polling_rides_out_nine_outages_in_a_row_but_not_ten() -> None:
    outage = ApiError(503, "dependency_unavailable", "Redis is down.")
    gone = ApiError(None, UNREACHABLE, "gone")
    client = Scripted([gone], [outage] * 9 + [{"status": "completed"}])
    assert wait_for_job(client, "t1", lines()[0], timeout=None) == {"status": "completed"}
    client = Scripted([gone], [outage] * 10 + [{"status": "completed"}])
    with pytest.raises(ApiError) as caught:
        wait_for_job(client, "t1", lines()[0], timeout=None)
    assert caught.value is outage


def test_a_refusal_while_polling_is_raised_at_once() -> None:
    refused = ApiError(401, "unauthorized", "Bad key.")
    client = Scripted([ApiError(None, UNREACHABLE, "gone")], [refused, {"status": "completed"}])
    with pytest.raises(ApiError) as caught:
        wait_for_job(client, "t1", lines()[0], timeout=None)
    assert caught.value is refused


def test_a_wait_with_no_time_left_asks_nothing() -> None:
    client = Scripted([[Event("end", {"status": "completed"})]])
    with pytest.raises(WaitTimeout):
        wait_for_job(client, "t1", lines()[0], timeout=0)
    assert client.read_timeouts == []


def test_the_streams_read_timeout_follows_the_time_left() -> None:
    client = Scripted([[Event("end", {"status": "completed"})], [Event("end", {"status": "completed"})]])
    wait_for_job(client, "t1", lines()[0], timeout=5)
    wait_for_job(client, "t1", lines()[0], timeout=0.1)  # never under half a second
    first, second = client.read_timeouts
    assert first is not None and 5.0 < first <= 5.2
    assert second == 0.5


def test_number_takes_only_numbers() -> None:
    assert [number(v) for v in (1, 0.25, "0.5", None, [1])] == [1.0, 0.25, None, None, None]
