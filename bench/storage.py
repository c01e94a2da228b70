"""Storage: what keeping a job's files in an S3-compatible store costs against the local folder,
and the extract stage's memory on a 4-hour recording.

- upload throughput: concurrent uploads of a file that is not media (the API streams it into
  the store, probes its copy, answers 415 and removes it), the same stack with
  ``STORAGE_URL`` a folder and then ``s3://`` on a SeaweedFS started for the run;
- end-to-end: jfk.flac (11 s) from upload start to ``completed``, cache cleared each time, on
  both stacks; the overhead is the difference of the medians;
- memory: ``stages.extract`` (fetch, decode, plan, store 48 chunks) on a 4-hour FLAC in a process
  of its own, with each store: its peak resident memory above where it started.

``python -m bench.storage`` runs this section alone and prints its table; ``python -m bench
--only storage`` runs it as part of the benchmark page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.client import Upload
from bench.jobs import transcribed_run
from bench.media import SHARED_AUDIO, Library
from bench.report import ms, table
from bench.stack import ROOT, Stack
from pipeline.tooling.s3 import S3Server, seaweedfs

BUCKET = "bench-storage"
MB = 2**20

# The project's own generated speech fixture (tests/fixtures/README.md says how it is made).
SPEECH_EN = ROOT / "tests" / "fixtures" / "speech_en.wav"


def log(message: str) -> None:
    print(f"[bench storage {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _stores(s3: S3Server) -> dict[str, dict[str, str]]:
    return {"folder": {}, "s3": {"STORAGE_URL": f"s3://{BUCKET}/{os.getpid()}", **s3.env()}}


def _uploads(stack: Stack, blob: Path, count: int) -> dict[str, Any]:
    gate = threading.Event()
    done: list[Upload] = []
    lock = threading.Lock()

    def one() -> None:
        gate.wait()
        up = stack.client.upload(blob)
        with lock:
            done.append(up)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    begin = min(up.started for up in done)
    end = max(up.started + up.seconds for up in done)
    statuses: dict[str, int] = {}
    for up in done:
        statuses[str(up.status)] = statuses.get(str(up.status), 0) + 1
    mib = sum(up.sent_bytes for up in done) / MB
    return {"count": count, "size_mib": blob.stat().st_size / MB, "rate": mib / (end - begin),
            "p50": statistics.median(up.seconds for up in done), "statuses": statuses}


def _end_to_end(stack: Stack, lib: Library, runs: int) -> list[float]:
    return [transcribed_run(stack, lib.jfk, {}, "sse").seconds for _ in range(runs)]


def service_rows(lib: Library, cache_dir: Path, s3: S3Server, *, uploads: int, size_mib: int,
                 runs: int) -> dict[str, dict[str, Any]]:
    """Upload throughput and jfk's end-to-end time with each store, one stack after the other."""

    blob = lib.blob(size_mib)
    rows: dict[str, dict[str, Any]] = {}
    for name, env in _stores(s3).items():
        stack = Stack(cache_dir / f"storage-{name}-{os.getpid()}", cache_dir / "models", redis_db=None,
                      extra_env={"MODEL_IDLE_TIMEOUT": "0", "SCRATCH_DIR": str(cache_dir / f"scratch-{name}"),
                                 **env})
        try:
            log(f"starting the stack with the {name} store")
            stack.start()
            transcribed_run(stack, lib.jfk, {}, "sse")  # loads the model, warms the store's client
            _uploads(stack, blob, 2)
            row = _uploads(stack, blob, uploads)
            row["e2e"] = _end_to_end(stack, lib, runs)
            rows[name] = row
            log(f"{name}: uploads {row['rate']:.0f} MiB/s ({row['statuses']}), jfk end to end "
                f"{ms(statistics.median(row['e2e']))}")
        finally:
            stack.close()
        shutil.rmtree(stack.run_dir, ignore_errors=True)
    return rows


# The extract stage in a child, measured as tests/integration/test_memory.py measures (warm-up, then the
# peak reset and read again after the work).
_EXTRACT = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from pipeline import media
    from pipeline.worker import chunks, stages
    from pipeline.worker.context import build_context
    from pipeline.jobs import new_task_id
    from pipeline.options import TranscribeOptions
    from pipeline.settings import Settings
    from pipeline.storage import upload_key
    SPEECH_EN = Path(sys.argv[2])

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    ctx = build_context(Settings.from_env())

    def job(source):
        task_id = new_task_id()
        ctx.storage.put_file(upload_key(task_id), Path(source))
        ctx.jobs.create(task_id, TranscribeOptions(), sha256=task_id)
        return task_id

    warm = job(SPEECH_EN)
    stages.extract(ctx, warm)
    ctx.storage.delete_job(warm)
    chunks.plan_chunks(media.decode_audio(SPEECH_EN).repeat(20), 2)  # loads the VAD model
    baseline = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.monotonic()
    task_id = job(sys.argv[1])
    stages.extract(ctx, task_id)
    seconds = time.monotonic() - t0
    chunks_made = len(ctx.jobs.get(task_id).chunks)
    ctx.storage.delete_job(task_id)
    print("RESULT " + json.dumps({"baseline": baseline, "peak": status("VmHWM"), "seconds": seconds,
                                   "chunks": chunks_made}), flush=True)
''')


def extract_memory(recording: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Peak resident growth of a process running ``stages.extract`` on ``recording``."""
    done = subprocess.run([sys.executable, "-c", _EXTRACT, str(recording), str(SPEECH_EN)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=3600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the extract measurement failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    result["growth_mib"] = (result["peak"] - result["baseline"]) / MB
    return result


def memory_rows(cache_dir: Path, s3: S3Server, hours: int, redis_url: str) -> dict[str, dict[str, Any]]:
    from bench.media import write_recording

    recording = cache_dir / "media" / f"silence-{hours}h.flac"
    if not recording.is_file():
        recording.parent.mkdir(parents=True, exist_ok=True)
        log(f"writing a {hours}-hour FLAC")
        write_recording(recording.with_suffix(".partial.flac"), hours * 3600, SPEECH_EN)
        recording.with_suffix(".partial.flac").replace(recording)
    rows = {}
    for name, env in _stores(s3).items():
        settings = {"REDIS_URL": redis_url, "UPLOAD_DIR": str(cache_dir / f"extract-{name}"),
                    "SCRATCH_DIR": str(cache_dir / f"scratch-{name}"), "ENABLE_CACHE": "false",
                    "DEVICE": "cpu", **env}
        log(f"extract of {hours} h with the {name} store")
        try:
            rows[name] = {**extract_memory(recording, settings), "hours": hours,
                          "bytes": recording.stat().st_size}
        finally:
            for folder in ("UPLOAD_DIR", "SCRATCH_DIR"):
                shutil.rmtree(settings[folder], ignore_errors=True)
        log(f"{name}: +{rows[name]['growth_mib']:.0f} MiB peak, {rows[name]['seconds']:.0f} s, "
            f"{rows[name]['chunks']} chunks")
    return rows


def measure(lib: Library, cache_dir: Path, *, uploads: int = 20, size_mib: int = 20, runs: int = 5,
            hours: int = 4, redis_url: str = "redis://localhost:6379/0") -> dict[str, Any]:
    """Both parts, on one SeaweedFS started for the run and stopped after."""
    with seaweedfs(timeout=90) as s3:
        return {"service": service_rows(lib, cache_dir, s3, uploads=uploads, size_mib=size_mib, runs=runs),
                "memory": memory_rows(cache_dir, s3, hours, redis_url)}


def render(results: Mapping[str, Any]) -> str:
    """The section for docs/benchmarks.md (empty when it did not run)."""
    if not results:
        return ""
    service, memory = results.get("service", {}), results.get("memory", {})
    out = "\n\n### Storage: a local folder against S3 (SeaweedFS on this machine)\n\n"
    if service:
        base = statistics.median(service["folder"]["e2e"]) if "folder" in service else None
        body = []
        for name, row in service.items():
            e2e = statistics.median(row["e2e"])
            body.append((name, f"{row['count']} × {row['size_mib']:.0f} MiB", f"{row['rate']:.0f} MiB/s",
                         ms(row["p50"]), ms(e2e), "" if base is None or name == "folder" else ms(e2e - base)))
        out += ("Uploads at once of a file the service refuses after storing and probing it (415), and "
                "jfk.flac (11 s) from upload start to `completed`, median of its runs.\n\n"
                + table(("store", "uploads", "upload throughput", "upload p50", "jfk end to end",
                         "overhead against the folder"), body))
    if memory:
        rows = [(name, f"{row['hours']} h ({row['bytes'] / MB:.1f} MB FLAC)", f"{row['chunks']}",
                 f"{row['seconds']:.0f} s", f"+{row['growth_mib']:.0f} MiB") for name, row in memory.items()]
        out += ("\n\nThe extract stage (fetch, decode to `.npy`, plan chunks with the VAD, store the chunks) "
                "in a process of its own: its peak resident memory above its size after a warm-up "
                "(goal: under 100 MB; decoding to one array once took 3.3 GB).\n\n"
                + table(("store", "recording", "chunks", "extract time", "peak growth"), rows))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio-dir", type=Path, default=SHARED_AUDIO)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--size", type=int, default=20, help="MiB per upload")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hours", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from pipeline.tooling.stack import redis_database, redis_url

    lib = Library(args.audio_dir, args.cache_dir / "media")
    with redis_database("bench-storage") as db:
        results = measure(lib, args.cache_dir, uploads=args.uploads, size_mib=args.size, runs=args.runs,
                          hours=args.hours, redis_url=redis_url(db))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
