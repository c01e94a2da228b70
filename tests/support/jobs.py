"""Jobs made in-process as the API makes them, for the tests that run a stage directly."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from pipeline.jobs import new_task_id
from pipeline.options import TranscribeOptions
from pipeline.uploads import upload_path
from pipeline.worker.context import Context
from tests.support.helpers import SPEECH_EN


def submit(ctx: Context, source: Path = SPEECH_EN, options: TranscribeOptions | None = None,
           **fields: Any) -> str:
    """Do what the API does: store the upload under the task id and create the job."""
    task_id = new_task_id()
    target = upload_path(ctx.settings.upload_dir, task_id)
    shutil.copy(source, target)
    sha256 = hashlib.sha256(target.read_bytes()).hexdigest()
    ctx.jobs.create(task_id, options or TranscribeOptions(), sha256=sha256, upload_path=str(target),
                    **fields)
    return task_id
