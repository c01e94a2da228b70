"""The generated part of docs/benchmarks.md, from one run's results."""

from __future__ import annotations

from typing import Any

from bench.report import median, ms, secs, table, verdict
from bench.results import Results

JFK_GOAL = 0.150
OVERHEAD_GOAL = 0.05
CACHE_GOAL = 0.020
E2E_ORDER = ("jfk", "en60", "meet60", "meet5m", "flac5m", "flac30m", "mp430m")


def _med(runs: list[dict[str, Any]], name: str) -> float:
    return median([float(r[name]) for r in runs])


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def goal_rows(res: Results) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for every goal this run measured."""
    rows = []
    for key in E2E_ORDER:
        if key not in res.e2e or key not in res.direct:
            continue
        e2e, direct = _med(res.e2e[key], "seconds"), _med(res.direct[key], "total")
        label = res.recordings[key]["label"]
        if key == "jfk":
            rows.append((f"overhead under {JFK_GOAL * 1000:.0f} ms on {label}", ms(e2e - direct),
                         e2e - direct < JFK_GOAL))
        else:
            share = (e2e - direct) / direct
            measured = f"{share:+.1%} ({ms(e2e - direct)})"
            if key in res.direct_chunked:
                chunked = _med(res.direct_chunked[key], "total")
                measured += f"; against the same chunks {(e2e - chunked) / chunked:+.1%}"
            rows.append((f"overhead under {OVERHEAD_GOAL:.0%} on {label}", measured, share < OVERHEAD_GOAL))
    if res.cache:
        p50 = res.cache["p50"]
        rows.append((f"cache hit p50 under {CACHE_GOAL * 1000:.0f} ms", ms(p50), p50 < CACHE_GOAL))
    return rows


def render_markdown(res: Results, *, quick: bool) -> str:
    out: list[str] = []
    add = out.append
    add("## Results of the last run" + (" (quick smoke run: few runs, no 30-minute files)" if quick else ""))
    add("")
    add(f"- **When:** {res.started} to {res.finished}; the run took {res.wall / 60:.1f} minutes "
        f"(generating the derived recordings: {res.media_seconds:.0f} s, done once and cached in `data/bench/media`).")
    add(f"- **Command:** `{res.command}`" + (f"; code at commit `{res.commit}`." if res.commit else ""))
    m = res.machine
    add(f"- **Machine:** {m['cpu']}; `nproc` {m['nproc']}; {m['memory']} memory; GPU: {m['gpu']}; "
        f"Linux {m['kernel']}; Python {m['python']}.")
    add("- **Libraries:** " + ", ".join(f"{k} {v}" for k, v in res.versions.items()) + ".")
    add(f"- **Service under test:** the Procfile's processes on Redis database {res.redis_db} and RabbitMQ "
        f"virtual host `{res.vhost}` (made and removed by the run), settings "
        + ", ".join(f"`{k}={v}`" for k, v in res.settings.items() if k not in ("REDIS_URL", "RABBITMQ_URL"))
        + "; every other setting at its default (cache on, cleared before every timed transcription).")
    for name, command in res.processes.items():
        add(f"  - {name}: `{command}`")
    following = "its Server-Sent Events stream" if res.follow == "sse" else "polling its status every 20 ms"
    add(f"- **Following a job:** {following}.")
    loads = ", ".join(f"{k} {secs(v)}" for k, v in res.load_seconds.items())
    add(f"- **Model load in the direct process** (outside every timing): {loads}.")
    add("")
    if res.noise:
        add("**Noise.** Other engineers' test suites may run on this machine at the same time. CPU used by "
            "processes outside the benchmark while each section ran (a share of all cores; it includes the "
            "shared Redis and RabbitMQ servers, which the benchmark itself keeps a little busy), and the "
            "1-minute load average at its start and end:")
        add("")
        add(table(["section", "duration", "CPU used by others", "benchmark's own CPU", "load average"],
                  [[name, secs(float(n["seconds"])), f"{float(n['other_share']):.0%}",
                    f"{float(n['own_share']):.0%}", n["load"]] for name, n in res.noise.items()]))
        add("")

    # 1. end to end
    rows, breakdown = [], []
    for key in E2E_ORDER:
        if key not in res.e2e:
            continue
        e2e_runs, rec = res.e2e[key], res.recordings[key]
        e2e = _med(e2e_runs, "seconds")
        direct_runs = res.direct.get(key, [])
        if direct_runs:
            direct = _med(direct_runs, "total")
            over = e2e - direct
            goal = (over < JFK_GOAL) if key == "jfk" else (over / direct < OVERHEAD_GOAL)
            bound = f"< {JFK_GOAL * 1000:.0f} ms" if key == "jfk" else f"< {OVERHEAD_GOAL:.0%}"
            goal_text = f"{bound}: {verdict(goal)}"
            same = res.same_text.get(key)
            paired = median([float(a["seconds"]) - float(b["total"])
                             for a, b in zip(e2e_runs, direct_runs, strict=False)])
            best_e2e = min(float(r["seconds"]) for r in e2e_runs)
            best_direct = min(float(r["total"]) for r in direct_runs)
            scored = res.wer.get(key)
            rows.append([rec["label"], len(e2e_runs), secs(direct), secs(e2e), f"{e2e / direct:.2f}×",
                         f"{scored['service']:.1%} / {scored['direct']:.1%}" if scored else "",
                         f"{over * 1000:+,.0f} ms", f"{over / direct:+.1%}", goal_text,
                         f"{paired * 1000:+,.0f} ms ({paired / direct:+.1%})",
                         f"{secs(best_direct)} / {secs(best_e2e)}: {(best_e2e - best_direct) * 1000:+,.0f} ms "
                         f"({(best_e2e - best_direct) / best_direct:+.1%})",
                         ("yes" if same else "no")
                         + (" (against the same chunks)" if key in res.direct_chunked else "")])
        outside = median([float(r["seconds"]) - float(r["transcribe"]) for r in e2e_runs])
        breakdown.append([rec["label"], ms(_med(e2e_runs, "upload")), ms(_med(e2e_runs, "before_queue")),
                          ms(_med(e2e_runs, "to_extract")), ms(_med(e2e_runs, "extract")),
                          secs(_med(e2e_runs, "transcribe")), ms(_med(e2e_runs, "to_client")),
                          ms(outside),
                          ms(_med(direct_runs, "decode")) if direct_runs else "",
                          secs(_med(direct_runs, "transcribe")) if direct_runs else "",
                          ms(_med(direct_runs, "gc")) if direct_runs else ""])
    if rows:
        add("### 1. End to end against the engine called directly")
        add("")
        add("*Direct*: decode + transcribe in one process, model loaded. *Service*: upload start to the "
            "client seeing `completed`. Overhead = median service − median direct (what the goals are judged "
            "on). Because other work on the machine slows runs at random, two steadier views are beside it: the "
            "median of the run-by-run differences (each service run is timed right before its direct run), and "
            "the best run of each.")
        add("")
        add(table(["recording", "runs", "direct (median)", "service (median)", "service / direct",
                   "WER service / direct", "overhead", "overhead %", "goal",
                   "paired overhead", "best direct / best service", "same transcript as direct"], rows))
        add("")
        add("Where the service's time goes (medians of the same runs; stage times from the job's own "
            "timestamped history in Redis):")
        add("")
        add(table(["recording", "upload → 202", "upload → job queued", "queued → extract starts",
                   "extract stage → transcribe starts", "transcribe stage", "completed → client sees it",
                   "service outside the transcribe stage", "direct: decode", "direct: transcribe",
                   "direct: a gc.collect() after"], breakdown))
        add("")
        cpu_rows = []
        for key in E2E_ORDER:
            if key in res.e2e and key in res.direct and all("cpu" in r for r in res.direct[key]):
                service_cpu, direct_cpu = _med(res.e2e[key], "cpu"), _med(res.direct[key], "cpu")
                cpu_rows.append([res.recordings[key]["label"], f"{direct_cpu:.2f} s", f"{service_cpu:.2f} s",
                                 f"{(service_cpu - direct_cpu) * 1000:+,.0f} ms",
                                 f"{(service_cpu - direct_cpu) / direct_cpu:+.1%}"])
        if cpu_rows:
            add("CPU time per job (medians), which other work on the machine disturbs much less than wall time: "
                "all threads of the direct process for decode + transcribe, against every process of the "
                "stack (API, extract worker, transcriber; not the shared Redis and RabbitMQ servers) from "
                "upload start to completion, in steps of 10 ms.")
            add("")
            add(table(["recording", "direct CPU", "service CPU", "difference", "difference %"], cpu_rows))
            add("")
        if res.api_warmup:
            w = res.api_warmup
            add(f"Before these runs the API was warmed up with {int(w['jobs'])} short uploads at once, as many as "
                f"it has threads (each thread opens its own RabbitMQ connection on its first job); with that many "
                f"at once, upload → 202 took {ms(w['cold_p50'])} at the median, the slowest {ms(w['cold_max'])}.")
            add("")
        chunk_rows = []
        for key in E2E_ORDER:
            if key in res.direct_chunked and key in res.direct:
                e2e, whole = _med(res.e2e[key], "seconds"), _med(res.direct[key], "total")
                chunked = _med(res.direct_chunked[key], "total")
                chunk_rows.append([res.recordings[key]["label"], secs(whole), secs(chunked),
                                   ms(_med(res.direct_chunked[key], "decode")), secs(e2e),
                                   f"{(e2e - whole) * 1000:+,.0f} ms ({(e2e - whole) / whole:+.1%})",
                                   f"{(e2e - chunked) * 1000:+,.0f} ms ({(e2e - chunked) / chunked:+.1%})",
                                   f"{_med(res.direct_chunked[key], 'cpu'):.1f} s / {_med(res.e2e[key], 'cpu'):.1f} s"])
        if chunk_rows:
            add("Recordings over `LONG_AUDIO_SECONDS` are transcribed by the service in chunks, and Whisper decodes "
                "a chunk a little differently from the same stretch inside the whole file (its context starts "
                "afresh at each cut), so the whole-file baseline does not do quite the same work. A second "
                "baseline does what one transcriber process does, in this process: decode, plan the same chunks "
                "(Silero VAD), transcribe them one after another. Against it the difference is the service's own "
                "cost.")
            add("")
            add(table(["recording", "direct, whole file", "direct, same chunks", "of which decode + plan",
                       "service (1 transcriber)", "service − whole file", "service − same chunks",
                       "CPU: same chunks / service"], chunk_rows))
            add("")
        if res.plan:
            add(f"The extract stage of a recording over `LONG_AUDIO_SECONDS` also plans its chunks (Silero VAD "
                f"over the whole file): {secs(res.plan['flac30m'])} for the 30-minute file, measured in this "
                f"process, giving {int(res.plan['chunks'])} chunks.")
            add("")
    if "flac30m" in res.e2e or "flac30m@2x1" in res.e2e:
        add("#### 30 minutes: one transcriber process against two")
        add("")
        add("On 2 cores the fair comparison keeps the total number of engine threads at the number of cores: "
            "one transcriber process with `CPU_THREADS=2` (the Procfile's one process) against two processes "
            "(`--processes 2`) with `CPU_THREADS=1` each. The 30-minute file is split into chunks of about "
            "`CHUNK_SECONDS` (300 s) that every transcriber process takes in parallel.")
        add("")
        par_rows = []
        base = _med(res.direct["flac30m"], "total") if "flac30m" in res.direct else None
        if base is not None:
            par_rows.append(["direct: one process, CPU_THREADS=2, the whole file in one call",
                             len(res.direct["flac30m"]), secs(base), "1.00×"])
        if "flac30m" in res.direct_chunked and base is not None:
            chunked = _med(res.direct_chunked["flac30m"], "total")
            par_rows.append(["direct: one process, CPU_THREADS=2, the same chunks one after another",
                             len(res.direct_chunked["flac30m"]), secs(chunked), f"{base / chunked:.2f}×"])
        for key, label in (("flac30m", "service: 1 transcriber process × CPU_THREADS=2"),
                           ("flac30m@2x1", "service: 2 transcriber processes × CPU_THREADS=1")):
            if key in res.e2e:
                value = _med(res.e2e[key], "seconds")
                par_rows.append([label, len(res.e2e[key]), secs(value),
                                 f"{base / value:.2f}×" if base else ""])
        add(table(["configuration", "runs", "median wall time", "speed against direct"], par_rows))
        add("")

    # 2. cache
    if res.cache:
        c = res.cache
        add("### 2. Cache hits")
        add("")
        add(f"jfk.flac uploaded {c['count']} times, one after another, after one transcription of it; each "
            "time the 202 answer already says `completed` and `cached: true`.")
        add("")
        add(table(["uploads", "p50", "p90", "p99", "min", "max", "mean", "not answered from the cache", "goal"],
                  [[c["count"], ms(c["p50"]), ms(c["p90"]), ms(c["p99"]), ms(c["min"]), ms(c["max"]),
                    ms(c["mean"]), c["not_hits"],
                    f"p50 < {CACHE_GOAL * 1000:.0f} ms: " + verdict(c["p50"] < CACHE_GOAL)]]))
        add("")

    # 3. throughput and engines
    if res.throughput:
        add("### 3. Throughput")
        add("")
        add("Different minutes of real meetings (two excerpts end to end, a different pair for each job), all "
            "submitted at once; against one direct process (the bare engine, sequential decoder, "
            "2 threads) transcribing the same files one after another, and against as many bare-engine "
            "processes as the service has transcribers, which is what these cores can give at most. "
            "*CPU per audio second* counts the CPU the configuration itself used; *others' CPU*, what the "
            "rest of the machine used meanwhile (the cores are shared: where it is large, compare CPU, "
            "not wall times).")
        add("")
        direct_rate = res.throughput.get("direct", {}).get("rate")
        add(table(["configuration", "jobs", "audio", "wall time", "audio seconds per second", "against direct",
                   "median job (upload → completed)", "CPU per audio second", "others' CPU"],
                  [[name, int(t["jobs"]), f"{t['audio']:.0f} s", secs(t["wall"]), f"{t['rate']:.1f}",
                    f"{t['rate'] / direct_rate:.2f}×" if direct_rate else "", secs(t["median_job"]),
                    f"{t['cpu'] / t['audio']:.3f}" if "cpu" in t else "",
                    secs(t["others"]) if "others" in t else ""]
                   for name, t in res.throughput.items()]))
        add("")
        if res.memory:
            idle, peak, direct = (float(res.memory[k]) for k in ("stack_idle", "stack_peak", "direct"))
            after = res.memory.get("stack_after")
            afterwards = "" if after is None else f", {float(after):.0f} MiB idle again a few seconds after them"
            add(f"Memory (PSS, shared pages split among the processes sharing them): the whole stack "
                f"{idle:.0f} MiB idle before the jobs, {peak:.0f} MiB at its peak under them{afterwards}; the "
                f"direct baseline's process {direct:.0f} MiB (goal: the stack at most 1.0 GB idle).")
            add("")
        split = [(name, proc, secs(cpu)) for name, t in res.throughput.items()
                 for proc, cpu in (t.get("cpu_by_process") or {}).items()]
        if split:
            add("Where the service's CPU went (CPU seconds per process over the whole run):")
            add("")
            add(table(["configuration", "process", "CPU"], split))
            add("")
    engine_rows = []
    for engine, prefix in (("faster-whisper", ""), ("openai-whisper", "openai:")):
        for key in ("jfk", "en60"):
            if f"{prefix}{key}" not in res.e2e or f"{prefix}{key}" not in res.direct:
                continue
            e2e_runs, direct_runs = res.e2e[f"{prefix}{key}"], res.direct[f"{prefix}{key}"]
            seconds = float(res.recordings[key]["seconds"])
            work, e2e = _med(direct_runs, "transcribe"), _med(e2e_runs, "seconds")
            engine_rows.append([engine, res.recordings[key]["label"], len(e2e_runs), secs(work),
                                f"{work / seconds:.3f}", secs(e2e), f"{e2e / seconds:.3f}"])
    if any(row[0] == "openai-whisper" for row in engine_rows):
        add("#### faster-whisper against openai-whisper (same tiny.en weights)")
        add("")
        add("Real-time factor = processing time / audio duration (lower is faster). faster-whisper runs "
            "CTranslate2 int8, openai-whisper PyTorch float32 (each engine's CPU default), both beam 5, "
            "`CPU_THREADS=2`.")
        add("")
        add(table(["engine", "recording", "runs", "direct: transcribe", "direct RTF", "service: upload → completed",
                   "service RTF"], engine_rows))
        add("")

    # 4. uploads
    if res.uploads:
        add("### 4. Upload throughput and the API's memory")
        add("")
        add("Concurrent uploads that are not media: the API streams each to `UPLOAD_DIR`, hashes it, looks up "
            "the cache, probes it and answers 415, then deletes it, so the upload path is timed without any job. "
            "The first two rows are random bytes behind a PNG signature (refused from the first bytes); the last "
            "is random bytes throughout, to show what probing costs. "
            "RSS is VmRSS of the gunicorn worker processes (the Procfile's `--workers 2`), summed, sampled every "
            "20 ms; *after* is 2 s after the last answer.")
        add("")
        add(table(["uploads", "total", "wall time", "MiB/s", "answers", "p50 request", "slowest",
                   "RSS before", "RSS peak", "RSS after", "largest worker's growth to peak"],
                  [[f"{u['count']} × {name}", _mib(u["total_mib"]), secs(u["wall"]),
                    f"{u['rate']:.0f}", ", ".join(f"{n}× {s}" for s, n in u["statuses"].items()),
                    ms(u["p50"]), ms(u["max"]), _mib(u["before"]), _mib(u["peak"]), _mib(u["after"]),
                    f"{u['peak_growth_max']:+.1f} MiB"] for name, u in res.uploads.items()]))
        add("")
        if res.probe:
            add(f"The probe alone (`pipeline.media.probe`, in this process): {ms(res.probe['png'])} for the "
                f"PNG-signed bytes, {ms(res.probe['random'])} for random bytes without a signature (FFmpeg reads "
                f"its whole probe size trying every allowed demuxer), {ms(res.probe['jfk'])} for jfk.flac.")
            add("")
        sizes = [u for name, u in res.uploads.items() if "random" not in name]
        if len(sizes) == 2:
            small, large = sizes
            growth = large["peak_growth_max"] - small["peak_growth_max"]
            add(f"Peak growth with {large['size_mib']:.0f} MiB uploads minus that with {small['size_mib']:.0f} MiB "
                f"uploads: {growth:+.1f} MiB for ten times the bytes — "
                + ("RSS does not grow with upload size." if growth < 10 else "RSS grows with upload size."))
            add("")

    goals = goal_rows(res)
    if goals:
        add("### Goals")
        add("")
        add(table(["goal", "measured (median)", "result"], [[g, v, verdict(ok)] for g, v, ok in goals]))
        add("")
    for note in res.notes:
        add(f"- {note}")
    return "\n".join(out)
