"""avfusion: audio-visual piano transcription that survives degraded audio."""

__version__ = "0.1.0"
