"""Speaker diarization, offline: who spoke when.

``diarize`` takes the decoded 16 kHz mono audio and returns speaker turns. The heavy models load
on first use (once per process and device), never at import, so importing ``Turn`` is cheap.
"""

from pipeline.diarization.engine import DiarizationOptions, diarize
from pipeline.diarization.turns import Turn

__all__ = ["DiarizationOptions", "Turn", "diarize"]
