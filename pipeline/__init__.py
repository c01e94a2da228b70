"""whisper-pipeline: the stages, actors and stores behind the transcription service."""
