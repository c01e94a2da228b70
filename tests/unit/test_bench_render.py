"""bench/render.py: the throughput section says where the CPU went and what memory the stack held."""

from __future__ import annotations

from bench.render import render_markdown
from bench.results import Results


def test_throughput_rows_show_cpu_per_audio_second_others_cpu_and_memory() -> None:
    res = Results(
        machine={"cpu": "x86-64", "nproc": "2", "memory": "24 GiB", "gpu": "none", "kernel": "6", "python": "3.11"},
        throughput={
            "service 2×1": {"jobs": 8, "audio": 480.0, "wall": 16.0, "rate": 30.0, "median_job": 9.0, "cpu": 30.0,
                            "cpu_by_process": {"transcriber": 28.5, "worker": 1.0, "web": 0.5}, "others": 2.0},
            "direct": {"jobs": 8, "audio": 480.0, "wall": 32.0, "rate": 15.0, "median_job": 4.0, "cpu": 29.0,
                       "others": 1.0},
        },
        memory={"stack_idle": 690.0, "stack_peak": 800.0, "direct": 250.0},
    )
    page = render_markdown(res, quick=False)
    assert "| service 2×1 | 8 | 480 s | 16.00 s | 30.0 | 2.00× |" in page
    assert "| 0.062 | 2.00 s |" in page  # 30 CPU s over 480 audio s; 2 s used by the rest of the machine
    assert "| service 2×1 | transcriber | 28.50 s |" in page
    assert "690 MiB idle" in page and "800 MiB at its peak" in page
