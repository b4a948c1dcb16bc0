"""`avfusion resynth`: play a MIDI file (a transcription, say) with any General MIDI instrument
through FluidSynth, and optionally put the new sound under the original video.

    from avfusion.resynth import resynthesize
    resynthesize("performance.mid", "violin.wav", program="violin")
    resynthesize("performance.mid", "violin.wav", program=40, mux="performance.mp4")  # + .mp4

- **Instrument**: a General MIDI program, by name (``pretty_midi.instrument_name_to_program``,
  case-insensitive: ``violin``, ``Acoustic Grand Piano``) or number 0..127. All the notes of
  the file (every non-drum track, merged) and its sustain pedal (CC64) are played on it.
- **Sound**: a soundfont by name (``fluidr3``, ``timgm6mb``, ``musescore``: the Debian files of
  :data:`avfusion.config.SOUNDFONTS`) or by path; stereo, 44.1 kHz, 16-bit WAV. The audio lasts
  until the file's last note-off (or pedal release) plus ``tail_s`` for the release.
- **Video** (``mux``): the video stream of the original is copied (H.264, HEVC, MPEG-4, AV1,
  VP9; others are re-encoded as H.264) and the new sound is encoded as AAC, padded with silence
  or cut to the video's length, into a new mp4.

Every output is written to a temporary file and renamed when complete: an error leaves no file.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avfusion.fileio import atomic_path
from avfusion.notes import Notes

OUTPUT_RATE_HZ: int = 44_100
"""Sample rate of the rendered WAV and of the muxed AAC track (Hz)."""
DEFAULT_SOUNDFONT: str = "fluidr3"
"""Soundfont used when none is given (a key of :data:`avfusion.config.SOUNDFONTS`)."""
DEFAULT_TAIL_S: float = 1.0
"""Seconds rendered after the last note-off, for the instrument's release and reverb."""
COPY_VIDEO_CODECS: tuple[str, ...] = ("h264", "hevc", "mpeg4", "av1", "vp9")
"""Video codecs copied as they are into the mp4; others are re-encoded as H.264."""
AAC_FRAME_SAMPLES: int = 1024
"""Samples per AAC frame."""


def parse_program(program: str | int) -> int:
    """A General MIDI program number from a name or a number.

    Args:
        program: ``0``..``127`` (as int or text), or a General MIDI instrument name, any case
            (``violin``, ``Acoustic Grand Piano``, ``string ensemble 1``).
    Returns:
        The program number, 0..127 (0 is Acoustic Grand Piano, 40 Violin).
    Raises:
        ValueError: a number outside 0..127 or an unknown name (the message lists a few names
            and the names that contain the text given, if any).
    """
    import pretty_midi

    text = str(program).strip()
    if text.lstrip("+-").isdigit():
        number = int(text)
        if not 0 <= number <= 127:
            raise ValueError(f"--program {text}: a General MIDI program number is 0..127")
        return number
    try:
        return int(pretty_midi.instrument_name_to_program(text))
    except ValueError:
        pass
    names = [str(n) for n in pretty_midi.constants.INSTRUMENT_MAP]
    close = [n for n in names if text.lower() in n.lower()] if text else []
    hint = f"; did you mean {', '.join(repr(n) for n in close[:6])}?" if close else ""
    raise ValueError(
        f"--program {text!r}: not a General MIDI instrument{hint} Give a number 0..127 or a "
        "name such as 'Acoustic Grand Piano', 'Violin', 'Cello', 'Flute', 'Church Organ', "
        "'Nylon String Guitar', 'String Ensemble 1' (the 128 General MIDI names)"
    )


def program_name(program: int) -> str:
    """The General MIDI name of a program number (0..127), e.g. ``Violin`` for 40."""
    import pretty_midi

    return str(pretty_midi.program_to_instrument_name(int(program)))


def resolve_soundfont(soundfont: str | Path | None) -> Path:
    """The soundfont file to play with: None is :data:`DEFAULT_SOUNDFONT`, otherwise see
    :func:`avfusion.config.find_soundfont` (a name, case-insensitive, or an .sf2/.sf3 path).

    Raises:
        FileNotFoundError: the file does not exist (names it; the Debian soundfonts come with
            ``make setup``).
    """
    from avfusion.config import find_soundfont

    return find_soundfont(DEFAULT_SOUNDFONT if soundfont is None else soundfont)[1]


def render_notes(
    notes: Notes,
    *,
    program: str | int = 0,
    soundfont: str | Path | None = None,
    duration_s: float | None = None,
    tail_s: float = DEFAULT_TAIL_S,
    sample_rate_hz: int = OUTPUT_RATE_HZ,
    pedal: bool = True,
    reverb: tuple[float, float] = (0.2, 0.2),
) -> np.ndarray:
    """Play notes (and their sustain pedal) on one General MIDI instrument with FluidSynth.

    Args:
        notes: seconds, MIDI pitches and velocities, CC64 events.
        program: General MIDI program, name or number (see :func:`parse_program`).
        soundfont: see :func:`resolve_soundfont`.
        duration_s: length of the result in seconds; default: the notes' end (last note-off
            or pedal release) plus ``tail_s``. Events after it are dropped.
        tail_s: seconds after the end for the release (used when ``duration_s`` is None).
        sample_rate_hz: output rate.
        pedal: play the CC64 events (sustain pedal); False plays the notes as written.
        reverb: FluidSynth reverb room size and level, each 0..1.
    Returns:
        float32 array, shape (n_samples, 2), stereo in [-1, 1), ``n_samples =
        round(duration_s * sample_rate_hz)``; rendered again at half the gain while it clips.
    Raises:
        ValueError: bad program, negative duration. FileNotFoundError: missing soundfont.
    """
    from avfusion.synth.render_audio import fluidsynth_render, notes_to_events

    number = parse_program(program)
    path = resolve_soundfont(soundfont)
    if duration_s is None:
        duration_s = _end_s(notes) + max(0.0, float(tail_s))
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s={duration_s}: must be a finite number of seconds >= 0")
    n_samples = round(duration_s * sample_rate_hz)
    if n_samples == 0:
        return np.zeros((0, 2), np.float32)
    events = notes_to_events(notes if pedal else Notes.from_iterables(notes.notes, []))
    gain = 0.6
    while True:
        stereo = fluidsynth_render(
            events, n_samples, path, {0: (0, number)}, gain=gain, reverb=reverb,
            sample_rate_hz=sample_rate_hz,
        )  # fmt: skip
        if np.abs(stereo.astype(np.int32)).max() < 32767 or gain < 0.05:
            return stereo.astype(np.float32) / 32768.0
        gain /= 2


def _end_s(notes: Notes) -> float:
    """Last note-off or pedal event (seconds); 0 for an empty file."""
    ends = [n.offset_s for n in notes.notes] + [p.time_s for p in notes.pedal]
    return max(ends, default=0.0)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate_hz: int = OUTPUT_RATE_HZ) -> Path:
    """Write float audio, shape (n_samples,) or (n_samples, channels), as 16-bit PCM WAV,
    atomically.

    Raises:
        OSError: the folder is missing or not writable (no file is left).
    """
    import soundfile as sf

    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate_hz, format="WAV", subtype="PCM_16")
    return path


def mux_audio(
    video: str | Path, audio: np.ndarray, out: str | Path, sample_rate_hz: int = OUTPUT_RATE_HZ
) -> Path:
    """Put ``audio`` under the video stream of ``video`` in a new mp4, atomically.

    The video stream is copied (codecs of :data:`COPY_VIDEO_CODECS`) or re-encoded as H.264;
    other streams of ``video`` are dropped. The audio, padded with silence or cut to the video
    stream's duration, is encoded as AAC, stereo (mono is duplicated).

    Args:
        video: any video file FFmpeg reads.
        audio: float (n_samples,) or (n_samples, 1 | 2) in [-1, 1], at ``sample_rate_hz``.
        out: the mp4 to write.
    Returns:
        ``out``.
    Raises:
        FileNotFoundError: no such video. ValueError: not a readable video, or no video stream
            (names the file). OSError: the output folder is missing or not writable.
    """
    import av

    video, out = Path(video), Path(out)
    if not video.is_file():
        raise FileNotFoundError(f"{video}: no such video (given as --mux)")
    x = np.asarray(audio, np.float32)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] not in (1, 2):
        raise ValueError(f"audio must be (n_samples,) or (n_samples, 1|2), got {x.shape}")
    x = np.repeat(x, 2, axis=1) if x.shape[1] == 1 else x
    try:
        container = av.open(str(video))
    except av.error.FFmpegError as exc:
        raise ValueError(f"{video}: not a readable video file ({exc})") from exc
    with container, atomic_path(out) as tmp:
        if not container.streams.video:
            raise ValueError(f"{video}: has no video stream (given as --mux)")
        v_in = container.streams.video[0]
        duration_s = _video_duration_s(container, v_in)
        n = round(duration_s * sample_rate_hz)
        x = np.pad(x[:n], ((0, max(0, n - len(x))), (0, 0)))
        try:
            with av.open(str(tmp), "w", format="mp4") as mp4:
                if v_in.codec_context.name in COPY_VIDEO_CODECS:
                    v_out = mp4.add_stream_from_template(v_in)
                    a_out = _aac_stream(mp4, sample_rate_hz)
                    for packet in container.demux(v_in):
                        if packet.dts is None:
                            continue
                        packet.stream = v_out
                        mp4.mux(packet)
                else:
                    v_out = _h264_stream(mp4, v_in)
                    a_out = _aac_stream(mp4, sample_rate_hz)
                    for frame in container.decode(v_in):
                        mp4.mux(v_out.encode(frame.reformat(format="yuv420p")))
                    mp4.mux(v_out.encode(None))
                for frame in _audio_frames(x, sample_rate_hz):
                    mp4.mux(a_out.encode(frame))
                mp4.mux(a_out.encode(None))
        except av.error.FFmpegError as exc:
            raise ValueError(f"{video}: cannot copy its video into {out} ({exc})") from exc
    return out


def _video_duration_s(container: Any, stream: Any) -> float:
    """Duration of a video stream (s): declared, else the container's, else by decoding."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    last = 0.0
    for frame in container.decode(stream):
        last = float(frame.time or 0.0)
    container.seek(0)
    rate = float(stream.average_rate or 30)
    return last + 1.0 / rate


def _aac_stream(mp4: Any, sample_rate_hz: int) -> Any:
    stream = mp4.add_stream("aac", rate=sample_rate_hz, layout="stereo")
    stream.bit_rate = 192_000
    return stream


def _h264_stream(mp4: Any, v_in: Any) -> Any:
    rate = v_in.average_rate or Fraction(30)
    stream = mp4.add_stream("libx264", rate=rate)
    stream.width, stream.height = v_in.codec_context.width, v_in.codec_context.height
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "18", "preset": "veryfast"}
    return stream


def _audio_frames(x: np.ndarray, sample_rate_hz: int) -> Iterator[Any]:
    """AAC-sized planar float frames of stereo audio (n_samples, 2), with sample pts."""
    import av

    planar = np.ascontiguousarray(np.clip(x, -1.0, 1.0).T)  # (2, n_samples)
    for start in range(0, planar.shape[1], AAC_FRAME_SAMPLES):
        chunk = np.ascontiguousarray(planar[:, start : start + AAC_FRAME_SAMPLES])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = sample_rate_hz
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate_hz)
        yield frame


def resynthesize(
    midi_path: str | Path,
    out: str | Path,
    *,
    program: str | int = 0,
    soundfont: str | Path | None = None,
    mux: str | Path | None = None,
    mux_out: str | Path | None = None,
    tail_s: float = DEFAULT_TAIL_S,
    pedal: bool = True,
) -> list[Path]:
    """Render a MIDI file with a General MIDI instrument to a WAV, and optionally an mp4.

    Args:
        midi_path: a Standard MIDI File (all non-drum tracks are played on ``program``).
        out: the WAV to write (stereo, 44.1 kHz, 16-bit).
        program: General MIDI program, name or number 0..127 (see :func:`parse_program`).
        soundfont: ``fluidr3`` (default), ``timgm6mb``, ``musescore`` or an .sf2/.sf3 path.
        mux: a video; the new sound is also put under its picture (see :func:`mux_audio`).
        mux_out: the mp4 for ``mux`` (default: ``out`` with the suffix ``.mp4``).
        tail_s: seconds after the last note-off (release).
        pedal: play the sustain pedal (CC64) events.
    Returns:
        The paths written: the WAV, then the mp4 if ``mux``.
    Raises:
        FileNotFoundError: missing MIDI file, soundfont or video. ValueError: unreadable MIDI or
            video, unknown program, an output that is not a .wav / .mp4 or would overwrite an
            input. OSError: an unwritable output. No output file is left on any error.
    """
    from avfusion.midi import read_midi

    midi_path, out = Path(midi_path), Path(out)
    if out.suffix.lower() != ".wav":
        raise ValueError(f"-o {out}: the output is a WAV file; give a name ending in .wav")
    number = parse_program(program)  # fail on options before reading anything
    sf_path = resolve_soundfont(soundfont)
    targets = [out]
    if mux is not None:
        mux_out = Path(mux_out) if mux_out is not None else out.with_suffix(".mp4")
        if mux_out.suffix.lower() != ".mp4":
            raise ValueError(f"--mux-out {mux_out}: give a name ending in .mp4")
        if not Path(mux).is_file():
            raise FileNotFoundError(f"{mux}: no such video (given as --mux)")
        if mux_out.resolve() == Path(mux).resolve():
            raise ValueError(f"--mux-out {mux_out}: would overwrite the input video")
        targets.append(mux_out)
    for t in targets:
        if t.is_dir():
            raise ValueError(f"{t}: is a folder; give a file name")
    notes = read_midi(midi_path)
    audio = render_notes(notes, program=number, soundfont=sf_path, tail_s=tail_s, pedal=pedal)
    with contextlib.ExitStack() as stack:  # both outputs or neither
        tmp_wav = stack.enter_context(atomic_path(out))
        write_wav(tmp_wav, audio)
        if mux is not None:
            tmp_mp4 = stack.enter_context(atomic_path(targets[1]))
            mux_audio(mux, audio, tmp_mp4)
    return targets


def _cmd_resynth(args: argparse.Namespace) -> int:
    written = resynthesize(
        args.midi, args.out, program=args.program, soundfont=args.soundfont, mux=args.mux,
        mux_out=args.mux_out, tail_s=args.tail_s, pedal=not args.no_pedal,
    )  # fmt: skip
    number = parse_program(args.program)
    print(f"wrote {', '.join(str(p) for p in written)} ({program_name(number)}, program {number})")
    return 0


def add_subparser(sub: argparse._SubParsersAction) -> None:
    """Add ``avfusion resynth`` to the ``avfusion`` command."""
    p = sub.add_parser(
        "resynth",
        help="play a MIDI file with any General MIDI instrument (FluidSynth), optionally under a video",
        description=(
            "Render a MIDI file (e.g. a transcription) with a General MIDI instrument through "
            "FluidSynth to a stereo 44.1 kHz WAV; with --mux VIDEO, also put the new sound "
            "under that video's picture as a new mp4 (video copied, audio AAC)."
        ),
    )
    p.add_argument("midi", type=Path, metavar="IN.mid", help="the MIDI file to play")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUT.wav", help="WAV output")
    p.add_argument(
        "--program",
        default="0",
        metavar="NAME|NUMBER",
        help="General MIDI instrument: a name such as violin, cello, flute, 'church organ' or a "
        "number 0..127 (default 0, Acoustic Grand Piano)",
    )
    p.add_argument(
        "--soundfont",
        metavar="SF2",
        help="fluidr3 (default), timgm6mb, musescore or an .sf2/.sf3 file",
    )
    p.add_argument(
        "--mux", type=Path, metavar="VIDEO", help="also write an mp4: this video with the new sound"
    )
    p.add_argument(
        "--mux-out", type=Path, metavar="OUT.mp4", help="the mp4 for --mux (default OUT with .mp4)"
    )
    p.add_argument(
        "--tail-s",
        type=float,
        default=DEFAULT_TAIL_S,
        metavar="S",
        help=f"seconds rendered after the last note-off (default {DEFAULT_TAIL_S:g})",
    )
    p.add_argument("--no-pedal", action="store_true", help="ignore the sustain pedal (CC64)")
    p.set_defaults(func=_cmd_resynth)
