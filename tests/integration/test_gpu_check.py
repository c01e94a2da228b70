"""bench/gpu_check.py: `DEVICE=cpu make gpu-check` end to end, into a page of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import BEGIN, END
from pipeline.settings import Settings
from tests.support.helpers import ROOT, SHARED_AUDIO


@pytest.mark.skipif(not (SHARED_AUDIO / "multilingual.mp3").is_file(), reason="../shared/audio is absent")
def test_cpu_mode_runs_every_section_and_writes_the_page(tmp_path: Path, settings: Settings) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nkept\n")
    env = {**os.environ, "DEVICE": "cpu", "CPU_THREADS": "2", "MODEL_DIR": str(settings.model_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--budget", "400", "--reserve", "5", "--engines", "faster-whisper",
         "--minutes", "0.2", "--job-seconds", "12",
         "--redis-url", settings.redis_url, "--output", str(page), "--work-dir", str(tmp_path / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and BEGIN in text and END in text
    assert "## GPU check (cpu)" in text and "python -m bench.gpu_check --budget 400" in text
    for title in ("1. GPUs as /api/gpu-status shows them", "2. Real-time factor of each engine",
                  "3. Sequential against batched", "4. 2 concurrent jobs through the transcribe stage",
                  "5. CUDA out of memory, retried on the CPU"):
        assert f"### {title}" in text
    assert "pynvml reports no GPU" in text
    rtf = re.search(r"\| faster-whisper \| tiny.en \| cpu int8 \| [\d.]+ s \| ([\d.]+) s \| ([\d.]+) .*\| ([\d.]+)% \|",
                    text)
    assert rtf, text
    assert float(rtf.group(1)) > 0 and float(rtf.group(3)) < 10  # transcribed, and about right
    batched = re.findall(r"\| tiny.en \| (sequential|8) \| ([\d.]+) s \| \d+ \| ([\d.]+)% \|", text)
    assert {b[0] for b in batched} == {"sequential", "8"}, text
    assert all(float(b[2]) < 10 for b in batched)
    # Short clips (jfk.flac and a pause, about 12 s): what is checked is that every section runs.
    concurrent = re.search(r"\| 2 \| 2 \| cpu \| (\d+) s \|", text)  # both jobs completed on the CPU
    assert concurrent and 20 <= int(concurrent.group(1)) <= 26, text
    assert "Skipped: no CUDA device here" in text
