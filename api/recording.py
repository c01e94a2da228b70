"""A live session's whole audio, kept with ``record=true`` and made an ordinary job at its end.

The audio is written as it arrives, straight into storage like an upload (``UploadSink``):
nothing of it stays in this process's memory however long the session runs. The container is
Sun's AU, whose header may say "length unknown" (the only common one that may: a WAV header
holds the length, which is not known until the end and cannot be rewritten in a bucket).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import numpy as np

from api import serializers
from api.state import ApiState
from api.urls import service_url
from pipeline import queues
from pipeline.cache import scoped
from pipeline.jobs import State, new_task_id
from pipeline.live import SAMPLE_RATE, LiveConfig
from pipeline.options import TranscribeOptions
from pipeline.uploads import UploadSink, remove_job_files

log = logging.getLogger(__name__)

# ".snd", header size, data size unknown, 16-bit linear PCM (big-endian), rate, one channel.
AU_HEADER = b".snd" + struct.pack(">IIIII", 24, 0xFFFFFFFF, 3, SAMPLE_RATE, 1)


class Recording:
    def __init__(self, st: ApiState, owner: str, session_id: str) -> None:
        self.st, self.owner, self.session_id = st, owner, session_id
        self.task_id = new_task_id()
        self.sink = UploadSink(st.storage, self.task_id, st.settings.scratch_dir)
        self.sink.write(AU_HEADER)
        self.samples = 0

    def write(self, pcm: bytes) -> None:
        """16 kHz mono s16le, as the session converted it."""
        self.sink.write(np.frombuffer(pcm, dtype="<i2").astype(">i2").tobytes())
        self.samples += len(pcm) // 2

    def finish(self, config: LiveConfig) -> dict[str, Any] | None:
        """The job made of the recording (its id and URLs), or None when nothing was said."""
        st = self.st
        self.sink.close()
        self.sink.drop_copy()
        if self.samples == 0:
            remove_job_files(st.storage, self.task_id)
            return None
        form: dict[str, Any] = {"model": config.engine_model}
        if config.language:
            form["language"] = config.language
        if config.prompt:
            form["initial_prompt"] = config.prompt
        options = TranscribeOptions.parse(form, st.settings)
        scope = self.owner if st.settings.cache_per_client else ""
        fields = {
            "sha256": self.sink.sha256, "filename": f"{self.session_id}.au",
            "upload_path": f"{st.storage.url}/{self.sink.key}",
            "result_url": service_url("transcribe.result", task_id=self.task_id),
            "size": self.sink.size, "owner": self.owner, "cache_scope": scope,
            "live_session": self.session_id,
        }
        st.jobs.create(self.task_id, options, **fields)
        cached = st.cache.get(scoped(self.sink.sha256, scope), options)
        if cached is not None:
            st.jobs.transition(self.task_id, State.COMPLETED, result=cached, cached=True,
                               language=cached.language, language_probability=cached.language_probability,
                               duration=cached.duration)
        else:
            queues.send(st.broker, queues.EXTRACT_ACTOR, self.task_id)
        log.info("live session %s: recorded %.1f s as job %s", self.session_id,
                 self.samples / SAMPLE_RATE, self.task_id)
        return {**serializers.accepted(st.jobs.get(self.task_id)), "duration": round(self.samples / SAMPLE_RATE, 3)}
