"""Memory stays flat with a recording's length: a 1-hour recording is decoded and its chunks
planned in a process whose resident memory grows by less than 100 MB (decoding it into one
array, as the service once did, takes about 700 MB)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bench.media import write_recording
from pipeline import media
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.settings import Settings
from pipeline.storage import LocalStorage, chunk_key
from pipeline.worker import chunks
from tests.support.helpers import SPEECH_EN, long_speech
from tests.support.measure import run_measured

MB = 1 << 20

@pytest.fixture(scope="module")
def hour_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recording(tmp_path_factory.mktemp("hour") / "hour.flac", 3600, SPEECH_EN)


@pytest.mark.timeout(900)
def test_one_hour_decodes_and_plans_in_flat_memory(hour_flac: Path, tmp_path: Path) -> None:
    target = tmp_path / "audio.npy"
    result = run_measured('''
        import numpy as np
        from pipeline import media
        from pipeline.worker import chunks
        from tests.support.helpers import SPEECH_EN

        source, target, warm = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
        media.decode_to_file(SPEECH_EN, warm)
        chunks.plan_chunks(warm, 2)  # loads the VAD model
        baseline = status("VmRSS")
        was_reset = reset_peak()
        samples = media.decode_to_file(source, target, max_duration=4 * 3600)
        decoded_peak = status("VmHWM")
        plan = chunks.plan_chunks(target, 300)
        peak = status("VmHWM")
        # The probe itself: reading the whole file into memory must show up.
        whole = np.load(target)
        report(baseline=baseline, decoded_peak=decoded_peak, peak=peak, samples=samples,
               plan=plan, reset=was_reset, whole_peak=status("VmHWM"), whole_bytes=whole.nbytes)
    ''', str(hour_flac), str(target), str(tmp_path / "warm.npy"))

    baseline, peak = int(result["baseline"]), int(result["peak"])  # type: ignore[call-overload]
    growth = peak - baseline
    assert growth < 100 * MB, f"decoding and planning 1 hour grew the process by {growth / MB:.0f} MB"
    # The measurement sees memory that is really taken: loading the array whole shows its size.
    whole_growth = int(result["whole_peak"]) - baseline  # type: ignore[call-overload]
    assert whole_growth > 0.9 * int(result["whole_bytes"])  # type: ignore[call-overload]

    samples = int(result["samples"])  # type: ignore[call-overload]
    assert samples == pytest.approx(3600 * SAMPLE_RATE, abs=SAMPLE_RATE // 10)
    stored = media.open_npy(target)
    assert stored.length == samples
    assert np.load(target, mmap_mode="r").shape == (samples,)

    plan = [tuple(span) for span in result["plan"]]  # type: ignore[attr-defined]
    assert len(plan) == 12
    assert plan[0][0] == 0 and plan[-1][1] == samples
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    for _, cut in plan[:-1]:
        # Every cut falls in a pause (between sayings, or a breath within one), never in a word.
        around = media.read_samples(stored, cut - 400, cut + 400)  # 25 ms either side
        assert float(np.abs(around).max()) < 0.05, f"cut at {cut / SAMPLE_RATE:.2f} s is not in a pause"
    # The speech survived the trip: the first saying is where it was put, not silence.
    first = media.read_samples(stored, 10 * SAMPLE_RATE, 16 * SAMPLE_RATE)
    assert float(np.sqrt(np.mean(first**2))) > 0.01


def test_plan_from_the_file_matches_the_plan_from_the_array(tmp_path: Path) -> None:
    wav = long_speech(tmp_path / "long.wav", 25)  # about 160 s: two VAD windows
    audio = decode_audio(wav)
    target = tmp_path / "long.npy"
    assert media.decode_to_file(wav, target) == len(audio)
    from_file = chunks.plan_chunks(target, 45)
    assert from_file == chunks.plan_chunks(audio, 45)
    assert len(from_file) >= 3


def test_windowed_vad_finds_the_pauses_of_one_pass(tmp_path: Path) -> None:
    audio = decode_audio(long_speech(tmp_path / "long.wav", 25))

    def read(start: int, end: int) -> np.ndarray:
        return audio[start:end]

    whole = chunks.speech_spans(read, len(audio), window_seconds=len(audio) / SAMPLE_RATE + 1)
    windowed = chunks.speech_spans(read, len(audio), window_seconds=20)
    # The fixture is said 25 times with half a second between: each saying is one span...
    assert len(whole) == len(windowed) >= 25
    # ...and windows that restart the VAD move a boundary by at most one VAD frame.
    for (a, b), (c, d) in zip(whole, windowed, strict=True):
        assert abs(a - c) <= 512 and abs(b - d) <= 512
    assert all(a[1] < b[0] for a, b in itertools.pairwise(windowed))


@pytest.mark.timeout(900)
def test_the_extract_stage_decodes_and_plans_one_hour_in_flat_memory(
        hour_flac: Path, tmp_path: Path, settings: Settings) -> None:
    """The same, through the worker's own path: ``stages.extract`` on a job whose upload is in
    storage, which fetches, decodes, plans and stores 12 chunks."""
    env = {"UPLOAD_DIR": str(tmp_path / "store"), "SCRATCH_DIR": str(tmp_path / "scratch"),
           "REDIS_URL": settings.redis_url, "RABBITMQ_URL": settings.rabbitmq_url, "DEVICE": "cpu",
           "LONG_AUDIO_SECONDS": "600", "CHUNK_SECONDS": "300", "ENABLE_CACHE": "false"}
    result = run_measured('''
        import hashlib, os, shutil
        from pipeline import media
        from pipeline.worker import chunks, stages
        from pipeline.worker.context import build_context
        from pipeline.jobs import new_task_id
        from pipeline.options import TranscribeOptions
        from pipeline.settings import Settings
        from pipeline.uploads import upload_path
        from tests.support.helpers import SPEECH_EN

        ctx = build_context(Settings.from_env(dict(arg.split("=", 1) for arg in sys.argv[2:])))

        def job(source):
            task_id = new_task_id()
            shutil.copy(source, upload_path(ctx.settings.upload_dir, task_id))
            ctx.jobs.create(task_id, TranscribeOptions(), sha256=task_id)
            return task_id

        warm = job(SPEECH_EN)
        stages.extract(ctx, warm)  # imports, the store's folders
        chunks.plan_chunks(media.decode_audio(SPEECH_EN).repeat(20), 2)  # loads the VAD model
        baseline = status("VmRSS")
        was_reset = reset_peak()
        task_id = job(Path(sys.argv[1]))
        following = stages.extract(ctx, task_id)
        peak = status("VmHWM")
        record = ctx.jobs.get(task_id)
        report(baseline=baseline, peak=peak, reset=was_reset, next=following.value,
               chunks=[list(c) for c in record.chunks], duration=record.duration, task_id=task_id,
               scratch=[p.name for p in ctx.settings.scratch_dir.rglob("*")])
    ''', str(hour_flac), *(f"{k}={v}" for k, v in env.items()))

    growth = int(result["peak"]) - int(result["baseline"])  # type: ignore[call-overload]
    assert growth < 100 * MB, f"the extract stage grew the worker by {growth / MB:.0f} MB on 1 hour"
    assert result["next"] == "chunks"
    plan = result["chunks"]
    assert isinstance(plan, list) and len(plan) == 12
    assert float(result["duration"]) == pytest.approx(3600, abs=0.1)  # type: ignore[arg-type]
    # Every chunk is in storage, as long as planned; nothing is left in the scratch folder.
    store = LocalStorage(tmp_path / "store")
    for index, (start, end) in enumerate(plan):
        path = store.local_path(chunk_key(str(result["task_id"]), index))
        assert path is not None and media.open_npy(path).length == end - start
    assert result["scratch"] == []
