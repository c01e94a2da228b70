"""Load: 500 short jobs from 20 concurrent clients. Every job must reach a final state once,
and the API's submit latency is measured.

Real transcription of 500 jobs would take far too long on a small machine, so the jobs are
made of two inputs: half repeat 5 (input, options) pairs whose transcripts are cached before
the load starts (answered at upload, never touching the broker), half are 35 new pairs
(beam_size 1..5 x 7 initial prompts), each submitted about 7 times at once: those go through
extract and transcribe, and exactly one job per pair runs the engine while its twins take its
result from the cache. At most 40 transcriptions in all."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from pipeline import keys
from tests.chaos.conftest import FINAL, TIMINGS, Chaos, history_is_sane, unique_speech, wait_until

JOBS = 500
CLIENTS = 20
BEAMS = range(1, 6)
PROMPTS = (None, "Weather report.", "A note for the team.", "Sunny and warm.", "Before noon.", "Office memo.",
           "The daily forecast.")


def plan(hit_audio: bytes, work_audio: bytes) -> list[tuple[str, bytes, dict[str, str]]]:
    jobs = []
    for i in range(JOBS):
        k = i // 2
        if i % 2 == 0:
            jobs.append(("hit", hit_audio, {"beam_size": str(BEAMS[k % 5])}))
        else:
            form = {"beam_size": str(BEAMS[k % 5])}
            prompt = PROMPTS[(k // 5) % len(PROMPTS)]
            if prompt:
                form["initial_prompt"] = prompt
            jobs.append(("work", work_audio, form))
    return jobs


@pytest.mark.timeout(300)
def test_500_jobs_from_20_clients(chaos: Chaos, tmp_path: Path) -> None:
    hit_audio = unique_speech(tmp_path / "hit.wav").read_bytes()
    work_audio = unique_speech(tmp_path / "work.wav").read_bytes()
    warm = [chaos.accepted(hit_audio, beam_size=str(beam)) for beam in BEAMS]
    assert all(chaos.wait_final(task_id)["status"] == "completed" for task_id in warm)

    jobs = plan(hit_audio, work_audio)
    local = threading.local()
    url = chaos.url + "/api/transcribe/async"

    def submit(index: int) -> dict[str, Any]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        kind, audio, form = jobs[index]
        began = time.perf_counter()
        response = local.session.post(url, files={"file": ("audio.wav", audio)}, data=form, timeout=60)
        seconds = time.perf_counter() - began
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        return {"kind": kind, "form": form, "code": response.status_code, "seconds": seconds,
                "task_id": body.get("task_id"), "cached": body.get("cached"), "body": body}

    began = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(submit, range(JOBS)))
    submit_seconds = time.monotonic() - began
    refused = [r for r in results if r["code"] != 202]
    assert not refused, refused[:3]
    ids = [str(r["task_id"]) for r in results]
    assert len(set(ids)) == JOBS

    def statuses() -> list[str | None]:
        pipe = chaos.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(keys.job_key(task_id), "status")
        return pipe.execute()

    wait_until(lambda: all(s in FINAL for s in statuses()), 200,
               f"all {JOBS} jobs final (logs in {chaos.logs})", interval=0.5)
    all_final_seconds = time.monotonic() - began
    assert statuses() == ["completed"] * JOBS

    pipe = chaos.redis.pipeline(transaction=False)
    for task_id in ids:
        pipe.lrange(keys.job_history_key(task_id), 0, -1)
        pipe.hget(keys.job_key(task_id), "cached")
    raw = pipe.execute()
    histories = [[json.loads(x) for x in h] for h in raw[::2]]
    cached = [c == "1" for c in raw[1::2]]
    insane = [(i, [h["status"] for h in hist]) for i, hist in zip(ids, histories, strict=True)
              if not history_is_sane(hist) or [h["status"] for h in hist].count("completed") != 1]
    assert not insane, insane[:5]

    hits = [r for r in results if r["kind"] == "hit"]
    work = [(r, c) for r, c in zip(results, cached, strict=True) if r["kind"] == "work"]
    # A cached pair is answered at upload: born completed, never queued.
    assert all(r["cached"] is True and r["body"]["status"] == "completed" for r in hits)
    assert all(len(h) == 2 for h, r in zip(histories, results, strict=True) if r["kind"] == "hit")
    # New pairs: the first of each pair is queued; a twin is answered at upload once the first
    # finished, or else queued and completed from the cache. The engine ran once per pair.
    assert all(r["cached"] is False or len(h) == 2
               for (r, _), h in zip(work, [h for h, r in zip(histories, results, strict=True)
                                           if r["kind"] == "work"], strict=True))
    pairs = {json.dumps(r["form"], sort_keys=True) for r, _ in work}
    engine_runs = sum(1 for _, c in work if not c)
    assert engine_runs == len(pairs) == 35
    queued = sum(1 for r, _ in work if r["cached"] is False)

    def percentiles(rows: list[dict[str, Any]]) -> dict[str, float]:
        seconds = np.array([r["seconds"] for r in rows]) * 1000
        p50, p90, p99 = np.percentile(seconds, [50, 90, 99])
        return {"p50_ms": round(float(p50), 1), "p90_ms": round(float(p90), 1),
                "p99_ms": round(float(p99), 1), "max_ms": round(float(seconds.max()), 1)}

    report = {
        "jobs": JOBS,
        "clients": CLIENTS,
        "submit_latency_all": percentiles(results),
        "submit_latency_cache_hits": percentiles(hits),
        "submit_latency_queued": percentiles([r for r, _ in work if r["cached"] is False]),
        "submit_seconds": round(submit_seconds, 1),
        "submits_per_second": round(JOBS / submit_seconds, 1),
        "all_final_after_seconds": round(all_final_seconds, 1),
        "answered_from_cache_at_upload": JOBS - queued,
        "queued_through_the_broker": queued,
        "engine_runs": engine_runs + len(warm),
        "queued_twins_completed_from_the_cache": queued - engine_runs,
    }
    path = tmp_path / "load.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"load test: {json.dumps(report)}; written to {path}")
    TIMINGS["load: report"] = str(path)
    TIMINGS["load: submit latency p50/p99 (ms), all 500"] = (
        report["submit_latency_all"]["p50_ms"], report["submit_latency_all"]["p99_ms"])
    TIMINGS["load: numbers"] = json.dumps(report)
