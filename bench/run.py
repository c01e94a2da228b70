"""``python -m bench``: measure the service against the engine called directly.

Sections (``--only`` picks some):

- ``e2e``: upload start to ``completed`` through the whole service, against decode +
  transcribe in this process with the model already loaded, on 11 s, 60 s, 5 min, 30 min
  and a 30-minute video;
- ``cache``: upload-to-completed of a recording the cache already holds;
- ``throughput``: N jobs at once against the same N one after another in one process;
- ``engines``: faster-whisper against openai-whisper on the same tiny.en weights;
- ``uploads``: concurrent upload throughput and the API workers' resident memory;
- ``parallel``: the 30-minute file (and the throughput jobs) with two transcriber processes
  of one thread each instead of one of two threads;
- ``targets``: the seed's targets (1 min, 5 min, a 30-minute video), first run and cached, for
  tiny.en and base (``bench.targets``);
- ``storage``: upload throughput and end-to-end time with S3 (SeaweedFS) against the local
  folder, and the extract stage's peak memory on a 4-hour recording (``bench.storage``);
- ``concurrency``: 1,000 event streams, 100 slow uploads and 50 synchronous waits held open
  while jobs run: health and status latency, the API's memory (``bench.concurrency``);
- ``diarize``: a job with speakers against the same without, its two parts side by side
  (``bench.diarize``);
- ``meetings``: who spoke when on nine real AMI meeting excerpts, DER at collar 0.25 s and 0,
  with and without speaker-count hints, one torch thread (``bench.diarize_meetings``);
- ``decoders``: faster-whisper's sequential decoder against its batched one (batch 4 and 8),
  with one engine thread and with two, time and WER (``bench.decoders``);
- ``pieces``: minutes of meetings decoded whole and cut into 2, 3 and 4 pieces: the split's CPU,
  the job's wall time on the transcribers and how far the text moves (``bench.pieces``);
- ``live``: realtime sessions fed at real-time pace: latency of a turn's first and completed
  text, WER against the file transcribed whole, 2/4/8 sessions at once and a ninth refused, the
  API's memory over a 30-minute session (``bench.live``);
- ``consistency``: the nine meeting excerpts alone and inside the five-minute recording of all
  of them: how far the words move with their place, and decoding loops (``bench.consistency``).

The recordings are real by default: jfk.flac, 60 s of English read aloud (words known, for WER),
minutes of real meetings (``meet60``: two excerpts end to end, a different pair for each
throughput job) and five minutes of all nine meetings with English (``meet5m``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from bench.client import BenchError, Upload
from bench.concurrency import render as render_concurrency
from bench.consistency import measure as measure_consistency
from bench.consistency import render as render_consistency
from bench.decoders import measure as measure_decoders
from bench.decoders import render as render_decoders
from bench.diarize import render as render_diarize
from bench.diarize_meetings import render as render_meetings
from bench.direct import Direct, run_in_processes
from bench.jobs import log, parallel, run_job, service_run, transcribed_run, warm
from bench.live import render as render_live
from bench.media import SHARED_AUDIO, Library, Recording
from bench.pieces import measure as measure_pieces
from bench.pieces import render as render_pieces
from bench.render import render_markdown
from bench.report import (
    CpuMeter,
    machine,
    median,
    ms,
    percentile,
    secs,
    server_versions,
    versions,
    write_doc,
)
from bench.results import Results
from bench.speech import wer
from bench.stack import ROOT, Stack, machine_cpu_seconds, pss
from bench.storage import render as render_storage
from bench.targets import measure as measure_targets
from bench.targets import render as render_targets

T = TypeVar("T")
SECTIONS = ("e2e", "cache", "throughput", "engines", "uploads", "parallel", "targets", "storage", "concurrency",
            "diarize", "meetings", "decoders", "pieces", "consistency", "live")
RECORDINGS = ("jfk", "en60", "meet60", "meet5m", "flac5m", "flac30m", "mp430m")
LONG_AUDIO_SECONDS = 600  # the service's defaults: longer recordings are split into chunks
CHUNK_SECONDS = 300
API_WARM_JOBS = 16  # at once: as many as the API has threads (2 workers × 8), so most threads get one
AFTER_BURST_SECONDS = 5  # after the last job of a burst, before the stack's memory is read again


# -- options ----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few minutes: fewer runs, no 30-minute files; writes "
                             "data/bench/benchmarks-quick.md unless --output is given")
    parser.add_argument("--runs-short", type=int, help="runs of each recording up to 60 s (default 5; quick 2)")
    parser.add_argument("--runs-long", type=int, help="runs of each longer recording (default 3; quick 1)")
    parser.add_argument("--cache-hits", type=int, help="uploads of a cached recording (default 200; quick 50)")
    parser.add_argument("--jobs", type=int, help="jobs submitted at once for throughput (default 8; quick 3)")
    parser.add_argument("--uploads", type=int, help="concurrent uploads per size (default 50; quick 10)")
    parser.add_argument("--upload-sizes", default="2,20", help="upload sizes in MiB, small,large (default 2,20)")
    parser.add_argument("--only", help=f"comma-separated sections among {', '.join(SECTIONS)} (default all); "
                                       "writes data/bench/benchmarks-quick.md unless --output is given")
    parser.add_argument("--recordings", help=f"comma-separated recordings for e2e among {', '.join(RECORDINGS)} "
                                             "(default all; quick: jfk,en60,meet60,meet5m)")
    parser.add_argument("--follow", choices=("sse", "poll"), default="sse",
                        help="follow each job by its event stream (default) or by polling its status every 20 ms")
    parser.add_argument("--redis-db", type=int, help="Redis database to claim (default: the first free of 1-15)")
    parser.add_argument("--audio-dir", type=Path, default=SHARED_AUDIO, help="where jfk.flac and multilingual.mp3 are")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "bench",
                        help="generated recordings, converted models and the run's files (default data/bench)")
    parser.add_argument("--output", type=Path, help="the page to write (default docs/benchmarks.md)")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="run nothing: render a saved run (data/bench/results/*.json) and write the page")
    args = parser.parse_args(argv)
    quick = args.quick
    args.runs_short = args.runs_short or (2 if quick else 5)
    args.runs_long = args.runs_long or (1 if quick else 3)
    args.cache_hits = args.cache_hits or (50 if quick else 200)
    args.jobs = args.jobs or (3 if quick else 8)
    args.uploads = args.uploads or (10 if quick else 50)
    small, large = (int(x) for x in args.upload_sizes.split(","))
    args.sizes = (small, large)
    args.sections = tuple(s for s in (args.only or ",".join(SECTIONS)).split(",") if s)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    args.recordings = tuple(r for r in (args.recordings or ",".join(RECORDINGS[:4] if quick else RECORDINGS))
                            .split(",") if r)
    unknown = set(args.recordings) - set(RECORDINGS)
    if unknown:
        parser.error(f"unknown recordings: {', '.join(sorted(unknown))}")
    if args.output is None:
        # Some sections alone would replace the whole run's results on the page with a part.
        partial = quick or set(args.sections) != set(SECTIONS)
        args.output = ROOT / ("data/bench/benchmarks-quick.md" if partial else "docs/benchmarks.md")
    return args


# -- the benchmark ----------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lib = Library(args.audio_dir, args.cache_dir / "media")
        self.stack = Stack(args.cache_dir / f"run-{os.getpid()}", args.cache_dir / "models",
                           redis_db=args.redis_db, extra_env={"MODEL_IDLE_TIMEOUT": "0"})
        self.direct = Direct(args.cache_dir / "models", cpu_threads=2)
        self.results = Results(follow=args.follow)
        self.meter = CpuMeter()
        self._section = ""

    # -- helpers ------------------------------------------------------------------------------
    def section(self, name: str) -> None:
        self.meter.start(self.stack.pids())
        self._section = name
        log(f"section {name}")

    def end_section(self) -> None:
        self.results.noise[self._section] = self.meter.stop(self.stack.pids())

    def recording(self, rec: Recording) -> None:
        self.results.recordings[rec.key] = {"label": rec.label, "seconds": rec.seconds,
                                            "bytes": rec.path.stat().st_size}

    def e2e_and_direct(self, rec: Recording, runs: int, key: str | None = None,
                       fields: dict[str, str] | None = None, engine: str = "faster-whisper",
                       direct: bool = True) -> None:
        key = key or rec.key
        self.recording(rec)
        long_audio = rec.seconds > LONG_AUDIO_SECONDS
        for n in range(runs):
            run = transcribed_run(self.stack, rec, fields or {}, self.args.follow)
            self.results.e2e.setdefault(key, []).append(asdict(run))
            line = (f"{key} run {n + 1}/{runs}: service {secs(run.seconds)} (upload {ms(run.upload)}, hop "
                    f"{ms(run.to_extract)}, extract {ms(run.extract)}, transcribe {ms(run.transcribe)}, "
                    f"to client {ms(run.to_client)})")
            if direct:
                d = self.direct.run(rec.path, engine)
                self.results.direct.setdefault(key, []).append({**asdict(d), "total": d.total})
                line += f"; direct {secs(d.total)} (decode {ms(d.decode)}, transcribe {secs(d.transcribe)})"
                if long_audio:
                    c = self.direct.run_chunked(rec.path, CHUNK_SECONDS, engine)
                    self.results.direct_chunked.setdefault(key, []).append({**asdict(c), "total": c.total})
                    line += f"; direct in the same chunks {secs(c.total)} (decode + plan {ms(c.decode)})"
                if n == 0:
                    status, text = self.stack.client.request(
                        "GET", f"/api/transcribe/async/{run.task_id}/result?format=text")
                    reference = c.text if long_audio else d.text
                    self.results.same_text[key] = status == 200 and str(text).strip() == reference.strip()
                    if rec.reference and status == 200:
                        self.results.wer[key] = {"service": wer(rec.reference, str(text)),
                                                 "direct": wer(rec.reference, d.text)}
            log(line)

    # -- sections -----------------------------------------------------------------------------
    def recordings_for_e2e(self) -> list[Recording]:
        make = {"jfk": lambda: self.lib.jfk, "en60": lambda: self.lib.en60, "meet60": lambda: self.lib.meet60,
                "meet5m": lambda: self.lib.meet5m, "flac5m": lambda: self.lib.long_flac(5),
                "flac30m": lambda: self.lib.long_flac(30), "mp430m": lambda: self.lib.long_video(30)}
        return [make[key]() for key in self.args.recordings]

    def e2e(self) -> None:
        self.section("e2e")
        for rec in self.recordings_for_e2e():
            self.e2e_and_direct(rec, self.args.runs_short if rec.seconds <= 60 else self.args.runs_long)
            if rec.key == "flac30m":
                self.results.plan["flac30m"], chunks = self.direct.plan_seconds(rec.path, CHUNK_SECONDS)
                self.results.plan["chunks"] = chunks
        self.end_section()

    def warm_api(self) -> None:
        """Uploads at once to every API thread: each opens its own RabbitMQ connection on its first
        job (Dramatiq's broker keeps one per thread), which a service that has run a while has done.
        The cold uploads' times are kept for the report."""
        gate = threading.Event()

        def one(rec: Recording) -> Upload:
            gate.wait()
            return self.stack.client.submit(rec.path)

        threading.Timer(0.2, gate.set).start()
        ups = parallel([functools.partial(one, rec) for rec in self.lib.clips(API_WARM_JOBS)])
        parallel([functools.partial(self.stack.client.follow_poll, up.body["task_id"], 300, 0.2) for up in ups])
        cold = [up.seconds for up in ups]
        self.results.api_warmup = {"jobs": len(cold), "cold_p50": median(cold), "cold_max": max(cold)}
        log(f"API warmed up: {len(cold)} uploads at once, upload → 202 p50 {ms(median(cold))}, "
            f"slowest {ms(max(cold))}")

    def cache(self) -> None:
        self.section("cache")
        jfk = self.lib.jfk
        transcribed_run(self.stack, jfk, {}, self.args.follow)  # the one transcription the hits are answered from
        times, bad = [], 0
        for _ in range(self.args.cache_hits):
            up = self.stack.client.upload(jfk.path)
            if up.status != 202 or up.body.get("status") != "completed" or not up.body.get("cached"):
                bad += 1
            times.append(up.seconds)
        self.results.cache = {
            "count": len(times), "not_hits": bad, "p50": percentile(times, 50), "p90": percentile(times, 90),
            "p99": percentile(times, 99), "min": min(times), "max": max(times), "mean": sum(times) / len(times),
            "stats": self.stack.client.get("/api/cache-stats"),
        }
        log(f"cache hits: p50 {ms(self.results.cache['p50'])}, p99 {ms(self.results.cache['p99'])}, "
            f"{bad} not answered from the cache")
        self.end_section()

    def throughput_service(self, name: str) -> None:
        copies = self.lib.meetings60(self.args.jobs)
        self.stack.client.clear_cache()
        gate = threading.Event()

        def submit(rec: Recording) -> Upload:
            gate.wait()
            return self.stack.client.submit(rec.path)

        threads_started = time.time()
        cpu_before, machine_before = self.stack.cpu_by_process(), machine_cpu_seconds()
        idle_pss, peak_pss = self.stack.pss(), [0.0]
        running = threading.Event()

        def sample() -> None:
            while not running.wait(0.5):
                peak_pss[0] = max(peak_pss[0], self.stack.pss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        pending = [functools.partial(submit, rec) for rec in copies]
        timer = threading.Timer(0.2, gate.set)
        timer.start()
        uploads = parallel(pending)
        # Followed only once every upload is in, so no event stream holds an API thread that
        # an upload is waiting for.
        seen = parallel([functools.partial(self.stack.client.follow, up.body["task_id"], self.args.follow, 3600)
                         for up in uploads])
        runs = [service_run(self.stack, up, s) for up, s in zip(uploads, seen, strict=True)]
        running.set()
        sampler.join()
        cpu_after, machine_after = self.stack.cpu_by_process(), machine_cpu_seconds()
        # What the stack keeps once the burst is over: each transcriber gives back its job's
        # memory when the job ends, so a few seconds on it should be near the idle figure again.
        time.sleep(AFTER_BURST_SECONDS)
        self.results.memory = {"stack_idle": idle_pss, "stack_peak": max(peak_pss[0], idle_pss),
                               "stack_after": self.stack.pss(), "direct": pss(os.getpid())}
        begin = min(up.started for up in uploads)
        wall = max(s.done_at for s in seen) - begin
        audio = sum(rec.seconds for rec in copies)
        # Where the service's CPU went, process by process, and what everything else on the
        # machine took meanwhile: with the cores shared, CPU seconds per audio second stay
        # comparable when wall times do not.
        spent = {proc: cpu_after.get(proc, 0.0) - cpu_before.get(proc, 0.0) for proc in cpu_after}
        self.results.throughput[name] = {"jobs": len(copies), "audio": audio, "wall": wall,
                                         "rate": audio / wall,
                                         "median_job": median([r.seconds for r in runs]),
                                         "setup": begin - threads_started, "cpu": sum(spent.values()),
                                         "cpu_by_process": spent,
                                         "others": machine_after - machine_before - sum(spent.values())}
        log(f"throughput {name}: {len(copies)} jobs, {audio:.0f} s of audio in {wall:.1f} s "
            f"({audio / wall:.1f} audio s per s)")

    def throughput(self) -> None:
        self.section("throughput")
        processes, threads = self.stack.transcriber
        self.throughput_service(f"service {processes}×{threads}")
        copies = self.lib.meetings60(self.args.jobs)
        started, machine_before = time.perf_counter(), machine_cpu_seconds()
        cpu = sum(self.direct.run(rec.path).cpu for rec in copies)
        wall = time.perf_counter() - started
        audio = sum(rec.seconds for rec in copies)
        self.results.throughput["direct"] = {"jobs": len(copies), "audio": audio, "wall": wall,
                                             "rate": audio / wall, "median_job": wall / len(copies), "cpu": cpu,
                                             "others": machine_cpu_seconds() - machine_before - cpu}
        log(f"throughput direct: {audio / wall:.1f} audio s per s")
        # The most these cores can do: the bare engine in as many processes as the service has
        # transcribers, with no service around it. The goal (>= 1.6x one direct process) assumes
        # the machine has that much more to give.
        machine_before = machine_cpu_seconds()
        wall, cpu = run_in_processes(self.args.cache_dir / "models", [rec.path for rec in copies], processes, threads,
                                     self.lib.jfk.path)
        self.results.throughput[f"direct {processes}×{threads}"] = {
            "jobs": len(copies), "audio": audio, "wall": wall, "rate": audio / wall,
            "median_job": wall * processes / len(copies), "cpu": cpu,
            "others": machine_cpu_seconds() - machine_before - cpu}
        log(f"throughput direct {processes}×{threads}: {audio / wall:.1f} audio s per s")
        self.end_section()

    def engines(self) -> None:
        self.section("engines")
        warm(self.stack, "openai-whisper", self.lib.jfk, self.args.follow)
        self.results.load_seconds["openai-whisper"] = self.direct.load("openai-whisper", self.lib.jfk.path)
        for rec in (self.lib.jfk, self.lib.en60):
            self.e2e_and_direct(rec, self.args.runs_short, key=f"openai:{rec.key}",
                                fields={"engine": "openai-whisper"}, engine="openai-whisper")
            if rec.key not in self.results.e2e:  # faster-whisper's runs, when e2e was left out
                self.e2e_and_direct(rec, self.args.runs_short)
        self.end_section()

    def uploads(self) -> None:
        self.section("uploads")
        small, large = self.args.sizes
        # A first round, not reported, so that every API thread has served an upload before.
        self.upload_round(f"warm-up {small} MiB", self.lib.blob(small), report=False)
        for size in (small, large):
            self.upload_round(f"{size} MiB", self.lib.blob(size))
        self.upload_round(f"{large} MiB random", self.lib.blob(large, signature=False))
        self.end_section()
        self.results.probe = {kind: probe_seconds(self.lib.blob(small, signature=kind == "png"))
                              for kind in ("png", "random")}
        self.results.probe["jfk"] = probe_seconds(self.lib.jfk.path)

    def upload_round(self, name: str, blob: Path, report: bool = True) -> None:
        pids = self.stack.api_workers()
        time.sleep(1.0)
        before = {pid: rss(pid) for pid in pids}
        peak = dict(before)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for pid in pids:
                    peak[pid] = max(peak[pid], rss(pid))
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        gate = threading.Event()

        def one() -> Upload:
            gate.wait()
            return self.stack.client.upload(blob)

        threading.Timer(0.2, gate.set).start()
        ups = parallel([one for _ in range(self.args.uploads)])
        end = max(up.started + up.seconds for up in ups)
        begin = min(up.started for up in ups)
        time.sleep(2.0)
        stop.set()
        sampler.join()
        after = {pid: rss(pid) for pid in pids}
        statuses: dict[str, int] = {}
        for up in ups:
            statuses[str(up.status)] = statuses.get(str(up.status), 0) + 1
        mib = sum(up.sent_bytes for up in ups) / 2**20
        row = {
            "count": len(ups), "size_mib": blob.stat().st_size / 2**20, "total_mib": mib, "wall": end - begin,
            "rate": mib / (end - begin), "statuses": statuses,
            "p50": percentile([u.seconds for u in ups], 50), "max": max(u.seconds for u in ups),
            "before": sum(before.values()), "peak": sum(peak.values()), "after": sum(after.values()),
            "peak_growth_max": max(peak[p] - before[p] for p in pids), "workers": len(pids),
            "left_in_upload_dir": sum(1 for p in (self.stack.run_dir / "uploads").rglob("*") if p.is_file()),
        }
        log(f"uploads {name}: {row['rate']:.0f} MiB/s, statuses {statuses}, RSS {row['before']:.0f} → "
            f"{row['peak']:.0f} → {row['after']:.0f} MiB")
        if report:
            self.results.uploads[name] = row

    def parallel_transcribers(self) -> None:
        self.section("parallel")
        self.stack.restart_transcriber(2, 1)
        self.results.processes["transcriber (parallel section)"] = self.stack.transcriber_command()
        warm(self.stack, "faster-whisper", self.lib.jfk, self.args.follow)
        if not self.args.quick:
            rec = self.lib.long_flac(30)
            self.e2e_and_direct(rec, self.args.runs_long, key="flac30m@2x1", direct=False)
        if "throughput" in self.args.sections:
            self.throughput_service("service 2×1")
        self.end_section()

    def targets(self) -> None:
        self.section("targets")
        follow = self.args.follow
        rows = measure_targets(
            self.lib,
            lambda rec, fields: transcribed_run(self.stack, rec, fields, follow).seconds,
            lambda rec, fields: run_job(self.stack, rec, fields, follow).seconds,
            models=("tiny.en",) if self.args.quick else ("tiny.en", "base"), quick=self.args.quick)
        self.results.targets = [row.to_dict() for row in rows]
        for row in rows:
            log(f"target {row.model} {row.recording}: first {secs(row.first)}, cached {secs(row.cached)} "
                f"(seed's target {secs(row.target)})")
        self.end_section()

    def decoders(self) -> None:
        self.section("decoders")
        rows = measure_decoders(self.lib, self.args.cache_dir / "models", self.args.runs_long, quick=self.args.quick)
        self.results.decoders = [row.to_dict() for row in rows]
        for row in rows:
            log(f"decoder {row.recording} threads {row.threads} batch {row.batch_size}: {secs(row.seconds)}, "
                f"WER {row.wer:.1%}")
        self.end_section()

    def pieces(self) -> None:
        self.section("pieces")
        rows = measure_pieces(self.lib, self.args.cache_dir / "models", quick=self.args.quick)
        self.results.pieces = [row.to_dict() for row in rows]
        self.end_section()

    def consistency(self) -> None:
        self.section("consistency")
        rows = measure_consistency(self.lib, self.args.cache_dir / "models")
        self.results.consistency = [row.to_dict() for row in rows]
        self.end_section()

    def storage(self) -> None:
        from bench import storage
        from pipeline.tooling.stack import redis_url

        self.section("storage")
        self.results.storage = storage.measure(
            self.lib, self.args.cache_dir, uploads=self.args.uploads, size_mib=self.args.sizes[1],
            runs=self.args.runs_short, hours=1 if self.args.quick else 4, redis_url=redis_url(self.stack.db or 0))
        self.end_section()

    def concurrency(self) -> None:
        from bench import concurrency

        self.section("concurrency")
        load = concurrency.Load(streams=300, uploads=30, waits=15, window=15) if self.args.quick else concurrency.Load()
        self.results.concurrency = concurrency.measure(self.stack, self.lib, load)
        self.end_section()

    def diarize(self) -> None:
        from bench import diarize

        self.section("diarize")
        self.results.diarize = diarize.measure(self.stack, self.args.cache_dir / "media",
                                               runs=1 if self.args.quick else 3)
        self.end_section()

    def live(self) -> None:
        from bench import live

        self.section("live")
        self.results.live = live.measure(self.stack, self.lib, quick=self.args.quick)
        self.end_section()

    def meetings(self) -> None:
        from bench import diarize_meetings

        # In this process, not through the service: the table is about the diarizer's accuracy.
        self.section("meetings")
        self.results.meetings = diarize_meetings.measure()
        self.end_section()

    # -- the whole run --------------------------------------------------------------------------
    def run(self) -> Results:
        res = self.results
        res.started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        started = time.monotonic()
        res.command = command_line(self.args)
        res.commit = git_commit()
        res.machine = machine()
        res.versions = versions()
        t = time.monotonic()
        # Everything the run uploads, generated (or found) before anything is timed.
        self.recordings_for_e2e()
        if "parallel" in self.args.sections and not self.args.quick:
            self.lib.long_flac(30)
        self.lib.meetings60(self.args.jobs)
        self.lib.clips(API_WARM_JOBS)
        for size in self.args.sizes:
            self.lib.blob(size)
        self.lib.blob(self.args.sizes[1], signature=False)
        res.media_seconds = time.monotonic() - t
        log("loading faster-whisper in this process (the direct baseline)")
        res.load_seconds["faster-whisper"] = self.direct.load("faster-whisper", self.lib.jfk.path)
        log("starting the stack")
        self.stack.start()
        res.redis_db, res.vhost = self.stack.db or 0, self.stack.vhost or ""
        res.versions.update(server_versions(self.stack.redis))
        res.settings = self.stack.settings_shown()
        res.processes = {name: cmd.shown() for name, cmd in self.stack.commands.items()}
        res.processes["transcriber"] = self.stack.transcriber_command()
        log(f"stack up at {self.stack.url} (Redis db {res.redis_db}, vhost {res.vhost}); warming up")
        warm(self.stack, "faster-whisper", self.lib.jfk, self.args.follow)
        self.warm_api()
        sections: dict[str, Callable[[], None]] = {
            "e2e": self.e2e, "cache": self.cache, "throughput": self.throughput, "engines": self.engines,
            "uploads": self.uploads, "parallel": self.parallel_transcribers, "targets": self.targets,
            "storage": self.storage, "concurrency": self.concurrency, "diarize": self.diarize,
            "meetings": self.meetings, "decoders": self.decoders, "pieces": self.pieces,
            "consistency": self.consistency,
            "live": self.live,
        }
        for name in SECTIONS:
            if name in self.args.sections:
                sections[name]()
        res.wall = time.monotonic() - started
        res.finished = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        return res


def probe_seconds(path: Path, runs: int = 7) -> float:
    """Median time of the API's media probe on ``path``, in this process."""
    from pipeline import media
    from pipeline.errors import PipelineError

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            media.probe(path)
        except PipelineError:
            pass
        times.append(time.perf_counter() - started)
    return median(times)


def rss(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def git_commit() -> str:
    """The checked-out commit, and whether the working tree differs from it (read-only git)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "api", "pipeline",
                                "Procfile", "pyproject.toml"], cwd=ROOT, capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}" + (" (service code modified in the working tree)" if dirty else "")


def command_line(args: argparse.Namespace) -> str:
    shown = "python -m bench" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    if os.environ.get("MAKELEVEL"):
        return f"make bench  (runs `.venv/bin/{shown}` after `make services`)"
    return f".venv/bin/{shown}"


def render_page(results: Results, quick: bool) -> str:
    return (render_markdown(results, quick=quick) + render_targets(results.targets)
            + render_storage(results.storage) + render_concurrency(results.concurrency)
            + render_diarize(results.diarize) + render_meetings(results.meetings)
            + render_decoders(results.decoders) + render_pieces(results.pieces)
            + render_consistency(results.consistency)
            + render_live(results.live))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = Results(**json.loads(args.from_json.read_text()))
        page = render_page(saved, quick="quick-" in args.from_json.name)
        print(page)
        if not args.no_write:
            write_doc(args.output, page)
        return 0

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    bench = Bench(args)
    results_dir = args.cache_dir / "results"
    try:
        results = bench.run()
    except KeyboardInterrupt:
        log(f"interrupted: stopping the stack (its logs stay in {bench.stack.run_dir / 'logs'})")
        return 130
    except BenchError as exc:
        log(f"failed: {exc} (the stack's logs stay in {bench.stack.run_dir / 'logs'})")
        return 1
    finally:
        bench.stack.close()
        log("stack stopped, virtual host and Redis database released")
    shutil.rmtree(bench.stack.run_dir, ignore_errors=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results_dir / f"{'quick' if args.quick else 'full'}-{stamp}.json").write_text(
        json.dumps(asdict(results), indent=2, default=str))
    page = render_page(results, quick=args.quick)
    print(page)
    if not args.no_write:
        write_doc(args.output, page)
        log(f"wrote {args.output}")
    log(f"done in {results.wall / 60:.1f} min")
    return 0
