"""Model names to weights on disk, without reaching the network where a package ships them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.errors import ModelNotFound
from pipeline.worker.weights.convert import ctranslate2_to_openai_checkpoint
from pipeline.worker.weights.packaged import PACKAGED_MODELS, openai_checkpoint, packaged_ctranslate2_dir


def resolve_ctranslate2(name: str, model_dir: Path) -> str:
    """What faster-whisper's ``WhisperModel`` should load for ``name``.

    Names a package ships resolve to its (reassembled) directory; a local directory is used as
    it is; any other name is handed to faster-whisper, which looks it up on the model hub.
    """
    packaged = packaged_ctranslate2_dir(name, model_dir)
    if packaged is not None:
        return str(packaged)
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise ModelNotFound(f"{name} is a folder but holds no CTranslate2 model.bin.")
        return str(local)
    return name


def resolve_openai(name: str, model_dir: Path) -> str:
    """What ``whisper.load_model`` should load for ``name``.

    Packaged models and local CTranslate2 folders are converted once into openai-whisper's
    checkpoint format and cached in ``model_dir``; a local ``.pt`` file is used as it is; any
    other name goes to openai-whisper, which downloads its own checkpoints.
    """
    if name in PACKAGED_MODELS:
        return str(openai_checkpoint(name, model_dir))
    local = Path(name).expanduser()
    if local.is_file():
        return str(local)
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise ModelNotFound(f"{name} is a folder but holds no CTranslate2 model.bin.")
        # One cached checkpoint per folder, named after its absolute path.
        digest = hashlib.sha256(str(local.resolve()).encode()).hexdigest()[:16]
        out = model_dir / f"openai-local-{digest}.pt"
        model_bin = local / "model.bin"
        if not out.is_file() or out.stat().st_mtime_ns < model_bin.stat().st_mtime_ns:
            ctranslate2_to_openai_checkpoint(local, out)
        return str(out)
    return name
