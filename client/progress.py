"""Upload and job progress on stderr, for the command line."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any, TextIO


class Progress(AbstractContextManager["Progress"]):
    """Upload and job progress on stderr: tqdm bars on a terminal, else a line per change."""

    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self._tqdm_class: Any = None
        if self.tty:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm comes with openai-whisper; without it, plain lines
                self.tty = False
            else:
                self._tqdm_class = tqdm
        self._upload: Any = None
        self._job: Any = None
        self._last_status: str | None = None
        self._task_id = ""

    def _tqdm(self, **kwargs: Any) -> Any:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        # A terminal that reports no size (some ptys, serial consoles) would get an empty bar.
        sizing: dict[str, Any] = {"dynamic_ncols": True} if columns else {"ncols": 80}
        return self._tqdm_class(file=self.stream, **sizing, **kwargs)

    def set_task(self, task_id: str) -> None:
        self._task_id = task_id

    def upload(self, sent: int, total: int) -> None:
        if not self.tty:
            return
        if self._upload is None:
            self._upload = self._tqdm(total=total, desc="uploading", unit="B", unit_scale=True,
                                      unit_divisor=1024, leave=False)
        self._upload.update(sent - self._upload.n)

    def uploaded(self, task_id: str, cached: bool) -> None:
        self.set_task(task_id)
        if self._upload is not None:
            self._upload.close()
            self._upload = None
        if self.enabled:
            self.line(f"submitted {task_id}" + (" (answered from the cache)" if cached else ""))

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._job is not None:
            self._job.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    @property
    def status(self) -> str | None:
        return self._last_status

    def job(self, status: str, progress: float | None = None) -> None:
        if not self.enabled:
            return
        if status != self._last_status and not self.tty:
            self.line(f"{self._task_id}: {status}")
        self._last_status = status
        if not self.tty:
            return
        if self._job is None:
            # The job's bar stays on the screen when it ends, showing the final state and time.
            self._job = self._tqdm(total=100, desc=status, leave=True,
                                   bar_format="{desc:<13} {percentage:3.0f}%|{bar}| [{elapsed}]")
        self._job.set_description_str(status, refresh=False)
        if progress is not None:
            self._job.update(max(0.0, min(100.0, progress * 100)) - self._job.n)
        self._job.refresh()

    def __exit__(self, *exc: object) -> None:
        for bar in (self._upload, self._job):
            if bar is not None:
                bar.close()
        self._upload = self._job = None
