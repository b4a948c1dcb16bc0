"""avfusion: audio-visual piano transcription that survives degraded audio.

    import avfusion
    notes = avfusion.transcribe("performance.mp4")   # avfusion.notes.Notes, with .info
    notes.to_midi("performance.mid")

``avfusion.transcribe`` is the function (the module of the same name is
``avfusion.transcribe`` in ``sys.modules``: ``from avfusion.transcribe import …`` works as usual).
Importing the package loads numpy only; torch, PyAV and OpenCV load on first use.
"""

from avfusion.transcribe import Transcription, TranscriptionError, transcribe

__version__ = "0.1.0"

__all__ = ["Transcription", "TranscriptionError", "__version__", "transcribe"]
