"""What runs only in worker processes: the stages and their actors, the engines, diarization,
the model weights, chunking and the process layout. The web process never imports this package
(an import-linter contract in pyproject.toml)."""
