"""The ``concurrency`` section: many clients waiting at once while jobs run.

Held open together, from one asyncio loop in this process (a socket each, no thread each):

- event streams (1,000 by default) on the running and queued jobs, each reopened on another
  job when its job ends, as the page does;
- slow uploads (100): a multipart upload trickled at 256 bytes every half second, never finished
  within the window, then abandoned (the API keeps nothing of it);
- synchronous waits (50): ``POST /api/transcribe`` of short clips queued behind the jobs.

Meanwhile another thread asks ``GET /api/health`` and a job's status route every 100 ms; the
goal is p99 under 100 ms for both. The API's memory (VmRSS of its gunicorn processes, summed)
is sampled before and during the load. Afterwards every job still queued or running is
cancelled, so the next section starts on an idle service.

The per-client limits are raised for the section (all the load comes from one address): the web
process is restarted with MAX_OPEN_STREAMS_PER_CLIENT and MAX_ACTIVE_JOBS_PER_CLIENT above the
load, and restarted again with the stack's settings at the end.

Standalone: ``python -m bench.concurrency`` starts a private stack, runs the section and prints
its table (``--streams``, ``--uploads``, ``--waits``, ``--window`` scale it down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.media import SHARED_AUDIO, Library
from bench.report import median, ms, percentile, table, verdict
from bench.stack import ROOT, Stack

GOAL_P99 = 0.100
FOLLOWED_JOBS = 20  # 60 s recordings: a few run during the window, the rest wait in the queue
TRICKLE_BYTES = 256
TRICKLE_EVERY = 0.5
SAMPLE_EVERY = 0.1


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Load:
    streams: int = 1000
    uploads: int = 100
    waits: int = 50
    window: float = 30.0  # seconds everything is held open and the probes sample


@dataclass
class Counters:
    streams_open: int = 0
    streams_opened: int = 0
    stream_statuses: dict[str, int] = field(default_factory=dict)
    stream_bytes: int = 0
    uploads_open: int = 0
    upload_answers: dict[str, int] = field(default_factory=dict)
    waits_open: int = 0
    wait_answers: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def count(self, table_: dict[str, int], key: object) -> None:
        table_[str(key)] = table_.get(str(key), 0) + 1


# -- the clients, on one asyncio loop -------------------------------------------------------------
class Crowd:
    def __init__(self, host: str, port: int, load: Load, task_ids: list[str], upload: Path,
                 clips: list[Path]) -> None:
        self.host, self.port, self.load = host, port, load
        self.task_ids = task_ids
        self.finished: set[str] = set()
        self.upload = upload
        self.clips = clips
        self.counters = Counters()
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.phase = "ramp"  # then "window", then "stop": when a client error happened

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port, limit=2**20)

    async def stream(self, n: int) -> None:
        assert self._stop is not None
        index = n
        while not self._stop.is_set():
            live = [t for t in self.task_ids if t not in self.finished] or self.task_ids
            task_id = live[index % len(live)]
            index += 1
            writer = None
            try:
                reader, writer = await self._connect()
                writer.write(f"GET /api/transcribe/async/{task_id}/events HTTP/1.1\r\nHost: bench\r\n"
                             "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                self.counters.count(self.counters.stream_statuses, status)
                if status != 200:
                    await asyncio.sleep(1)
                    continue
                self.counters.streams_open += 1
                self.counters.streams_opened += 1
                try:
                    while chunk := await reader.read(65536):
                        self.counters.stream_bytes += len(chunk)
                        if b"event: end" in chunk:
                            self.finished.add(task_id)
                finally:
                    self.counters.streams_open -= 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.counters.count(self.counters.errors, f"stream {exc.__class__.__name__} ({self.phase})")
                await asyncio.sleep(1)
            finally:
                if writer is not None:
                    writer.close()

    async def slow_upload(self) -> None:
        assert self._stop is not None
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{self.upload.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode() + self.upload.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        writer = None
        try:
            reader, writer = await self._connect()
            writer.write(f"POST /api/transcribe/async HTTP/1.1\r\nHost: bench\r\n"
                         f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode())
            self.counters.uploads_open += 1
            try:
                sent = 0
                while sent < len(body) and not self._stop.is_set():
                    writer.write(body[sent:sent + TRICKLE_BYTES])
                    await writer.drain()
                    sent += TRICKLE_BYTES
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), TRICKLE_EVERY)
                if sent >= len(body):  # a window longer than the trickle: the answer counts
                    head = await reader.readuntil(b"\r\n\r\n")
                    self.counters.count(self.counters.upload_answers, int(head.split(b" ", 2)[1]))
            finally:
                self.counters.uploads_open -= 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.counters.count(self.counters.errors, f"upload {exc.__class__.__name__} ({self.phase})")
        finally:
            if writer is not None:
                writer.close()

    async def sync_wait(self, clip: Path) -> None:
        assert self._stop is not None
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{clip.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode() + clip.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        writer = None
        try:
            reader, writer = await self._connect()
            writer.write(f"POST /api/transcribe?format=text HTTP/1.1\r\nHost: bench\r\n"
                         f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            self.counters.waits_open += 1
            try:
                answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
                stop = asyncio.ensure_future(self._stop.wait())
                done, _ = await asyncio.wait({answer, stop}, return_when=asyncio.FIRST_COMPLETED)
                if answer in done:
                    self.counters.count(self.counters.wait_answers, int(answer.result().split(b" ", 2)[1]))
                for pending in (answer, stop):
                    pending.cancel()
            finally:
                self.counters.waits_open -= 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.counters.count(self.counters.errors, f"wait {exc.__class__.__name__} ({self.phase})")
        finally:
            if writer is not None:
                writer.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(self.stream(n)) for n in range(self.load.streams)]
        tasks += [asyncio.ensure_future(self.slow_upload()) for _ in range(self.load.uploads)]
        tasks += [asyncio.ensure_future(self.sync_wait(self.clips[n % len(self.clips)]))
                  for n in range(self.load.waits)]
        self.ready.set()
        await self._stop.wait()
        await asyncio.sleep(0.5)  # each client sees the stop and closes its socket
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def run(self) -> None:
        asyncio.run(self._main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)


# -- probes and memory --------------------------------------------------------------------------
def timed_get(host: str, port: int, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - started, response.status
    finally:
        conn.close()


def rss_mib(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def summary(times: list[float]) -> dict[str, float]:
    return {"count": len(times), "p50": percentile(times, 50), "p90": percentile(times, 90),
            "p99": percentile(times, 99), "max": max(times), "median": median(times)}


# -- the section ----------------------------------------------------------------------------------
def _restart_web(stack: Stack, **env: str) -> None:
    assert stack.service is not None
    stack.service.replace("web", stack.commands["web"], **env)
    stack.wait_ready()


def _cancel_unfinished(stack: Stack) -> int:
    cancelled = 0
    for state in ("queued", "extracting", "transcribing"):
        while True:
            jobs = stack.client.get(f"/api/transcribe/async?status={state}&limit=100")["jobs"]
            if not jobs:
                break
            for job in jobs:
                status, _ = stack.client.request("DELETE", f"/api/transcribe/async/{job['task_id']}")
                cancelled += status == 202
            if len(jobs) < 100:
                break
    return cancelled


def measure(stack: Stack, lib: Library, load: Load) -> dict[str, Any]:
    """Run the section on a started stack; the results (``render`` makes them a table)."""
    host, port = "127.0.0.1", stack.port
    limits = {"MAX_OPEN_STREAMS_PER_CLIENT": str(load.streams * 2 + 100),
              "MAX_ACTIVE_JOBS_PER_CLIENT": str(load.uploads + load.waits + FOLLOWED_JOBS + 100)}
    log(f"concurrency: restarting the API with {limits}")
    _restart_web(stack, **limits)
    try:
        workers = stack.api_workers()
        idle_rss = rss_mib(workers)
        followed = [stack.client.submit(rec.path).body["task_id"] for rec in lib.en60_variants(FOLLOWED_JOBS)]
        crowd = Crowd(host, port, load, followed, lib.jfk.path, [c.path for c in lib.clips(max(1, load.waits))])
        runner = threading.Thread(target=crowd.run, name="crowd", daemon=True)
        ramp_started = time.monotonic()
        runner.start()
        crowd.ready.wait(60)
        # Until every client is connected (streams answered, uploads trickling, waits sent).
        c = crowd.counters
        deadline = time.monotonic() + 120
        while (c.streams_open < load.streams or c.uploads_open < load.uploads or c.waits_open < load.waits) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        ramp = time.monotonic() - ramp_started
        log(f"concurrency: {c.streams_open} streams, {c.uploads_open} slow uploads, {c.waits_open} waits open "
            f"after {ramp:.1f} s; sampling for {load.window:.0f} s")
        crowd.phase = "window"
        health: list[float] = []
        status: list[float] = []
        bad: dict[str, int] = {}
        peak_rss, least_open = idle_rss, c.streams_open
        window_started = time.monotonic()
        while time.monotonic() - window_started < load.window:
            for path, into in (("/api/health", health), (f"/api/transcribe/async/status/{followed[-1]}", status)):
                seconds, code = timed_get(host, port, path)
                into.append(seconds)
                if code != 200:
                    bad[f"{path.split('/')[2]} {code}"] = bad.get(f"{path.split('/')[2]} {code}", 0) + 1
            peak_rss = max(peak_rss, rss_mib(workers))
            least_open = min(least_open, c.streams_open)
            time.sleep(SAMPLE_EVERY)
        held = {"streams": c.streams_open, "uploads": c.uploads_open, "waits": c.waits_open}
        listed: list[dict[str, Any]] = stack.redis.client_list() if stack.redis is not None else []  # type: ignore[assignment]
        redis_clients = sum(1 for client in listed if str(client.get("db")) == str(stack.db))
        crowd.phase = "stop"
        crowd.stop()
        runner.join(60)
        log("concurrency: load stopped; cancelling the jobs still queued or running")
        cancelled = _cancel_unfinished(stack)
        results: dict[str, Any] = {
            "load": asdict(load), "ramp_seconds": ramp, "held_at_end": held, "least_streams_open": least_open,
            "health": summary(health), "status": summary(status), "non_200": bad,
            "rss_idle": idle_rss, "rss_peak": peak_rss, "api_processes": len(workers),
            "redis_clients": redis_clients, "counters": asdict(c), "cancelled_after": cancelled,
            "web": stack.commands["web"].shown(),
        }
        log(f"concurrency: health p99 {ms(results['health']['p99'])}, status p99 {ms(results['status']['p99'])}, "
            f"API RSS {idle_rss:.0f} → {peak_rss:.0f} MiB")
        return results
    finally:
        log("concurrency: restarting the API with the stack's settings")
        _restart_web(stack)


def render(results: dict[str, Any]) -> str:
    """The section's part of the page (empty when it did not run)."""
    if not results:
        return ""
    load = results["load"]
    h, s = results["health"], results["status"]
    c = results["counters"]
    rows = [
        ("`GET /api/health`", h["count"], ms(h["p50"]), ms(h["p90"]), ms(h["p99"]), ms(h["max"]),
         verdict(h["p99"] < GOAL_P99)),
        ("`GET /api/transcribe/async/status/<id>`", s["count"], ms(s["p50"]), ms(s["p90"]), ms(s["p99"]),
         ms(s["max"]), verdict(s["p99"] < GOAL_P99)),
    ]
    held = results["held_at_end"]
    return "\n".join([
        "",
        "## Many clients at once",
        "",
        f"{load['streams']} event streams, {load['uploads']} slow uploads ({TRICKLE_BYTES} bytes every "
        f"{TRICKLE_EVERY} s) and {load['waits']} synchronous waits (`POST /api/transcribe`) held open from one "
        f"asyncio loop while {FOLLOWED_JOBS} 60 s jobs run or wait; meanwhile health and a job's status are "
        f"asked every {SAMPLE_EVERY * 1000:.0f} ms for {load['window']:.0f} s (goal: p99 under "
        f"{GOAL_P99 * 1000:.0f} ms). Everything connected in {results['ramp_seconds']:.1f} s; at the end "
        f"{held['streams']} streams, {held['uploads']} uploads and {held['waits']} waits were still open (the "
        f"fewest streams open at once: {results['least_streams_open']}; a stream whose job ends is reopened "
        f"on another).",
        "",
        table(("probe", "answers", "p50", "p90", "p99", "max", "p99 < 100 ms"), rows),
        "",
        f"API memory (VmRSS of its {results['api_processes']} gunicorn worker processes, summed): "
        f"{results['rss_idle']:.0f} MiB idle, {results['rss_peak']:.0f} MiB at most under this load. "
        f"Redis connections (every process of the stack, on its database): {results['redis_clients']}. "
        f"Streams answered: {c['stream_statuses']}; opened in all {c['streams_opened']}; "
        f"non-200 probes: {results['non_200'] or 'none'}; "
        f"client errors: {c['errors'] or 'none'}. Web process: `{results['web']}`.",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Load()
    parser.add_argument("--streams", type=int, default=defaults.streams)
    parser.add_argument("--uploads", type=int, default=defaults.uploads)
    parser.add_argument("--waits", type=int, default=defaults.waits)
    parser.add_argument("--window", type=float, default=defaults.window)
    parser.add_argument("--audio-dir", type=Path, default=SHARED_AUDIO)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    load = Load(streams=args.streams, uploads=args.uploads, waits=args.waits, window=args.window)
    lib = Library(args.audio_dir, args.cache_dir / "media")
    stack = Stack(args.cache_dir / f"run-{os.getpid()}", args.cache_dir / "models", redis_db=None,
                  extra_env={"MODEL_IDLE_TIMEOUT": "0"})
    try:
        lib.en60_variants(FOLLOWED_JOBS)
        lib.clips(max(1, load.waits))
        stack.start()
        results = measure(stack, lib, load)
    finally:
        stack.close()
    shutil.rmtree(stack.run_dir, ignore_errors=True)  # its logs stay when the run failed
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
