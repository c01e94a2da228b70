"""One job through a running stack, timed from the client's side and from the job's history,
and running such calls in parallel."""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.client import BenchError, Followed, Upload
from bench.media import Recording
from bench.stack import Stack

T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- running things in parallel, interruptibly ------------------------------------------------
def parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run each call in a daemon thread; re-raise the first failure. Ctrl-C is not held up
    by threads waiting on the service: they die with the process."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def runner(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            errors[index] = exc

    threads = [threading.Thread(target=runner, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    for error in errors:
        if error is not None:
            raise error
    return results


# -- one job through the service --------------------------------------------------------------
@dataclass
class ServiceRun:
    seconds: float  # upload start to the client seeing `completed`
    upload: float  # upload start to the 202 answer
    before_queue: float  # upload start to the job record (stream, hash, cache lookup, probe)
    to_extract: float  # job queued to the extract stage starting (RabbitMQ hop)
    extract: float  # extract stage start to transcribe stage start (decode, .npy, cache, VAD plan, hop)
    transcribe: float  # transcribe stage start to completed (engine, gc, cache put; chunks: all of them)
    to_client: float  # completed to the client seeing it (pub/sub, event stream or polling)
    task_id: str
    status: str
    cpu: float = 0.0  # CPU seconds the stack's processes used from upload start to completion
    cached: bool = False  # answered from the cache: not a transcription, so not a valid timed run


def run_job(stack: Stack, rec: Recording, fields: dict[str, str], follow: str) -> ServiceRun:
    cpu = stack.cpu_seconds()
    up: Upload = stack.client.submit(rec.path, fields)
    task_id = up.body["task_id"]
    seen: Followed = stack.client.follow(task_id, follow, timeout=300 + 2 * rec.seconds)
    run = service_run(stack, up, seen)
    run.cpu = stack.cpu_seconds() - cpu
    run.cached = bool(up.body.get("cached")) or stack.job_field(task_id, "cached") == "1"
    return run


def transcribed_run(stack: Stack, rec: Recording, fields: dict[str, str], follow: str) -> ServiceRun:
    """A run that really transcribed. The cache is cleared first; a run answered from the cache
    anyway (a worker may store a result just after the job shows completed) is done again."""
    for _ in range(5):
        stack.client.clear_cache()
        run = run_job(stack, rec, fields, follow)
        if not run.cached:
            return run
        log(f"{rec.key}: answered from the cache although it was cleared before the upload; again")
        time.sleep(2)
    raise BenchError(f"{rec.key} kept being answered from the cache")


def service_run(stack: Stack, up: Upload, seen: Followed) -> ServiceRun:
    task_id = up.body["task_id"]
    if seen.status != "completed":
        status = stack.client.get(f"/api/transcribe/async/status/{task_id}")
        raise BenchError(f"job {task_id} ended {seen.status}: {status.get('error')}")
    at = {str(h["status"]): float(h["at"]) for h in stack.history(task_id)}
    queued = at.get("queued", up.started)
    extracting = at.get("extracting", queued)
    transcribing = at.get("transcribing", extracting)
    completed = at.get("completed", seen.done_at)
    return ServiceRun(
        seconds=seen.done_at - up.started,
        upload=up.seconds,
        before_queue=queued - up.started,
        to_extract=extracting - queued,
        extract=transcribing - extracting,
        transcribe=completed - transcribing,
        to_client=seen.done_at - completed,
        task_id=task_id,
        status=seen.status,
    )


def warm(stack: Stack, engine: str, rec: Recording, follow: str) -> None:
    """Load ``engine`` in every transcriber process, as a running service has it loaded.
    Jobs differ in beam size so that none waits for a twin and every process gets one."""
    processes = stack.transcriber[0]
    for attempt in range(4):
        stack.client.clear_cache()
        parallel([functools.partial(run_job, stack, rec, {"engine": engine, "beam_size": str(b)}, follow)
                  for b in range(1, processes + 1 + attempt)])
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            workers = stack.transcribe_workers()
            loaded = [w for w in workers if any(str(m).startswith(f"{engine}:") for m in w.get("models") or [])]
            if len(workers) >= processes and len(loaded) >= processes:
                return
            time.sleep(0.5)
    raise BenchError(f"{engine} did not load in all {processes} transcriber processes")
