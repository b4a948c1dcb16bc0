"""Training and evaluation data from a corpus on disk: cached rectified keyboard frames,
labels on the model's frame grid, random windows with audio degradation and video
augmentation.

Labels (Onsets and Frames, Hawthorne et al. 2018), for model frame i at time
``i · hop_length / sample_rate_hz``:

- ``onset[i, k]``: 1 on the frame nearest a note's onset (``round(onset_s · frame_rate)``);
- ``frame[i, k]``: 1 while the key is down, frames ``round(onset·fr) .. round(offset·fr) − 1``
  (at least the onset frame); key-down, not pedal-extended: the pedal has its own label;
- ``offset[i, k]``: 1 on the frame nearest the key release;
- ``velocity[i, k]``: MIDI velocity / 127 on onset frames, else 0;
- ``pedal[i]``: 1 while CC64 ≥ 64.

Rectified frames are cached per performance as uint8 arrays under
``<corpus>/.cache/rect_<W>x<H>/`` (``<id>.npy`` frames (N, H, W), ``<id>.times.npy`` seconds),
so that epochs do not decode video. Timbre-augmentation renders (:func:`timbre_audio`) are
cached as float32 arrays under ``<corpus>/.cache/timbre/<soundfont>/<split>/<id>.npy``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avfusion.audio import load_audio
from avfusion.config import MIDI_MAX, MIDI_MIN, N_KEYS, SAMPLE_RATE_HZ
from avfusion.fileio import atomic_path
from avfusion.midi import read_midi
from avfusion.notes import Notes


@dataclass(frozen=True)
class DataConfig:
    """Windows, frame grid and augmentation of the training data."""

    window_s: float = 5.0
    hop_length: int = 512
    sample_rate_hz: int = SAMPLE_RATE_HZ
    rect_width_px: int = 416
    rect_height_px: int = 40
    windows_per_epoch: int = 2000
    # video augmentation
    p_video_aug: float = 0.8
    brightness: float = 0.2  # ± relative
    contrast: float = 0.25  # ± relative
    blur_sigma_px: tuple[float, float] = (0.0, 1.0)
    corner_jitter_px: float = 3.0  # x shift/scale jitter in rectified pixels
    p_dropped_frame: float = 0.05  # a frame repeats the previous one
    # low light and sensor noise (off by default, so older configs train as they did)
    p_low_light: float = 0.0  # share of windows whose brightness is scaled by a gain
    low_light_gain: tuple[float, float] = (0.1, 0.6)
    p_sensor_noise: float = 0.0  # share of windows with Gaussian sensor noise added
    sensor_noise_sd: tuple[float, float] = (0.0, 8.0)  # grey levels (of 255), after the gain
    # occluders (off by default): with probability p_occlusion a window gets one patch over a
    # share of the keyboard's width drawn from occlusion_width, full key depth, for a share of
    # its frames drawn from occlusion_time (one interval), filled flat, with a ramp or with
    # texture (a hand, sheet music, a camera strap across the keys)
    p_occlusion: float = 0.0
    occlusion_width: tuple[float, float] = (0.05, 0.5)
    occlusion_time: tuple[float, float] = (0.2, 1.0)
    max_av_offset_frames: float = 2.0  # audio-video offset, in video frames
    # timbre augmentation (off by default): a share of training windows take their clean audio
    # from the performance re-rendered with another piano (avfusion.config.TIMBRE_SOUNDFONTS)
    timbre_soundfonts: tuple[str, ...] = ()
    p_timbre: float = 0.0
    degradation: dict = field(default_factory=dict)  # avfusion.noise.SamplerConfig fields

    def __post_init__(self) -> None:
        """Raises ValueError on an occluder range outside (0, 1] (at load, not mid-training)."""
        _check_shares("occlusion_width", self.occlusion_width)
        _check_shares("occlusion_time", self.occlusion_time)

    @property
    def frame_rate_hz(self) -> float:
        """Label frames per second, ``sample_rate_hz / hop_length`` (31.25 by default)."""
        return self.sample_rate_hz / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Model frames for a clip (centred frames, as nnAudio's CQT): n_samples // hop + 1."""
        return n_samples // self.hop_length + 1


def make_labels(notes: Notes, n_frames: int, frame_rate_hz: float) -> dict[str, np.ndarray]:
    """Frame-grid labels of a performance (see the module docstring).

    Returns:
        ``onset``, ``frame``, ``offset``, ``velocity``: float32 (n_frames, 88);
        ``pedal``: float32 (n_frames,).
    """
    onset = np.zeros((n_frames, N_KEYS), np.float32)
    frame = np.zeros((n_frames, N_KEYS), np.float32)
    offset = np.zeros((n_frames, N_KEYS), np.float32)
    velocity = np.zeros((n_frames, N_KEYS), np.float32)
    for n in notes.notes:
        if not MIDI_MIN <= n.pitch <= MIDI_MAX:
            continue
        k = n.pitch - MIDI_MIN
        i_on = round(n.onset_s * frame_rate_hz)
        i_off = max(round(n.offset_s * frame_rate_hz), i_on + 1)
        if 0 <= i_on < n_frames:
            onset[i_on, k] = 1.0
            velocity[i_on, k] = n.velocity / 127.0
        frame[max(i_on, 0) : min(i_off, n_frames), k] = 1.0
        if 0 <= i_off < n_frames:
            offset[i_off, k] = 1.0
    pedal = np.zeros(n_frames, np.float32)
    t = np.arange(n_frames) / frame_rate_hz
    for a, b in notes.pedal_down_intervals():
        pedal[(t >= a) & (t < b)] = 1.0
    return {"onset": onset, "frame": frame, "offset": offset, "velocity": velocity, "pedal": pedal}


def labels_to_notes(labels: dict[str, np.ndarray], frame_rate_hz: float) -> Notes:
    """Read notes back from labels (onset frame to the end of the frame run); the inverse of
    :func:`make_labels` to within one frame. For tests and sanity checks."""
    from avfusion.notes import Note, PedalEvent

    out = []
    onset, frame, vel = labels["onset"], labels["frame"], labels["velocity"]
    for i, k in zip(*np.nonzero(onset), strict=True):
        j = i + 1
        while j < len(frame) and frame[j, k] > 0.5 and onset[j, k] < 0.5:
            j += 1
        out.append(
            Note(
                i / frame_rate_hz,
                j / frame_rate_hz,
                int(k) + MIDI_MIN,
                max(1, round(vel[i, k] * 127)),
            )
        )
    pedal = labels["pedal"] > 0.5
    changes = np.flatnonzero(np.diff(np.concatenate([[False], pedal])))
    events = [PedalEvent(i / frame_rate_hz, 127 if pedal[i] else 0) for i in changes]
    return Notes.from_iterables(out, events)


# ---------------------------------------------------------------------------------------------
# Corpus and cache


@dataclass(frozen=True, eq=False)
class Performance:
    """One performance: of a synthetic corpus on disk, or of a real dataset
    (:mod:`avfusion.datasets`), in the same in-memory form.

    Attributes:
        id: unique within its split (names cache files).
        split: ``train``, ``validation``, ``test`` or a dataset's own split name.
        folder: the corpus performance folder (``<root>/<split>/<id>``); for a dataset, the
            folder that holds the performance's main file.
        duration_s: length in seconds (of the audio, else of the video).
        fps: video frame rate in frames per second (0 when there is no video).
        corners_px: float64 (4, 2), the keyboard's corners in video pixels (x, y), clockwise
            from the back-left (top-left); None when unknown (found by
            :func:`keyboard_corners` with :mod:`avfusion.detect` when first needed).
        video_path: a video file, or a folder of frame images ``frame{N}.jpg`` (frame N at
            ``(N - 1) / fps`` seconds, Audeo's layout); None when there is no video.
            Default for a corpus: ``folder / "video.mp4"``.
        audio_path: the reference audio (any file :func:`avfusion.audio.load_audio` reads,
            also a video's audio track); None when there is none. Default for a corpus:
            ``folder / "audio.flac"``.
        notes_path: the ground-truth labels file. Default for a corpus: ``folder / "notes.mid"``.
        read_notes: reads ``notes_path`` into :class:`Notes` (seconds, MIDI pitch); a
            module-level function (picklable); None: :func:`avfusion.midi.read_midi`.
        cache_dir: where cached rectified frames and detected corners go; default for a
            corpus: ``<root>/.cache``.
        dataset: ``corpus`` or the :mod:`avfusion.datasets` format name.
        source_key: what identifies the recording across splits and datasets (e.g. a
            YouTube id), for duplicate checks; None when unknown.
        has_velocity, has_pedal: whether the labels carry real velocities / CC64.
    """

    id: str
    split: str
    folder: Path
    duration_s: float
    fps: float
    corners_px: np.ndarray | None
    video_path: Path | None = None
    audio_path: Path | None = None
    notes_path: Path | None = None
    read_notes: Callable[[Path], Notes] | None = None
    cache_dir: Path | None = None
    dataset: str = "corpus"
    source_key: str | None = None
    has_velocity: bool = True
    has_pedal: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        if self.dataset == "corpus":
            for name, file in (("video_path", "video.mp4"), ("audio_path", "audio.flac"),
                               ("notes_path", "notes.mid")):  # fmt: skip
                if getattr(self, name) is None:
                    object.__setattr__(self, name, self.folder / file)
        if self.corners_px is not None:
            object.__setattr__(
                self, "corners_px", np.asarray(self.corners_px, dtype=np.float64).reshape(4, 2)
            )

    @property
    def cache_root(self) -> Path:
        """The cache folder (``cache_dir``, else ``<corpus root>/.cache``)."""
        return (
            self.cache_dir if self.cache_dir is not None else self.folder.parent.parent / ".cache"
        )

    def notes(self) -> Notes:
        """The ground-truth notes (seconds, MIDI pitch 21..108) and CC64 events.

        Raises:
            FileNotFoundError: no labels file. ValueError: unreadable labels (names the file).
        """
        if self.notes_path is None:
            raise FileNotFoundError(f"performance {self.id}: has no labels file")
        reader = self.read_notes or read_midi
        return reader(self.notes_path)

    def load_audio(self, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
        """The reference audio, float32 (n_samples,) mono at ``sample_rate_hz``; silence of
        ``duration_s`` when the performance has no audio."""
        if self.audio_path is None:
            return np.zeros(round(self.duration_s * sample_rate_hz), np.float32)
        return load_audio(self.audio_path, sample_rate_hz)


def list_performances(root: str | Path, split: str) -> list[Performance]:
    """The complete performances of one split, from ``manifest.jsonl``.

    Raises:
        FileNotFoundError: no manifest (make the corpus with ``avfusion synth``).
        ValueError: the split has no performances.
    """
    root = Path(root)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest}: no corpus here; make one with `avfusion synth --out {root}`"
        )
    out = []
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] != split:
            continue
        folder = root / split / rec["id"]
        meta = json.loads((folder / "meta.json").read_text())
        out.append(Performance(rec["id"], split, folder, float(meta["duration_s"]), float(meta["fps"]),
                               np.asarray(meta["keyboard_corners_px"], dtype=np.float64)))  # fmt: skip
    if not out:
        raise ValueError(f"{manifest}: no performances in split {split!r}")
    return out


FRAME_IMAGE_RE = re.compile(r"^frame(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)
"""Frame images of a video folder (Audeo's ``frame{N}.jpg``, N from 1)."""


def frame_images(folder: Path) -> list[tuple[int, Path]]:
    """The ``frame{N}.jpg`` images of a folder, sorted by N.

    Raises:
        FileNotFoundError: no such folder. ValueError: no frame images in it.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such frame folder")
    found = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := FRAME_IMAGE_RE.match(p.name))
    )
    if not found:
        raise ValueError(f"{folder}: no frame images (frame<N>.jpg) in this folder")
    return found


def iter_performance_frames(
    perf: Performance, *, gray: bool = True
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a performance's video (a file, or a folder of frame images) frame by frame.

    Yields:
        (time_s, frame): seconds, uint8 (H, W) gray or (H, W, 3) RGB.
    Raises:
        ValueError: the performance has no video, or it cannot be read (names the file).
    """
    from avfusion.video import iter_frames

    if perf.video_path is None:
        raise ValueError(f"performance {perf.id} ({perf.dataset}): has no video")
    if perf.video_path.is_dir():
        from PIL import Image

        for n, path in frame_images(perf.video_path):
            try:
                with Image.open(path) as im:
                    img = np.asarray(im.convert("L" if gray else "RGB"))
            except OSError as exc:
                raise ValueError(f"{path}: not a readable image ({exc})") from exc
            yield (n - 1) / perf.fps, img
    else:
        yield from iter_frames(perf.video_path, gray=gray)


def keyboard_corners(perf: Performance) -> np.ndarray:
    """The keyboard's corners of a performance: its own, else detected on frames of the
    first 30 s (one a second, :func:`avfusion.detect.detect_keyboard_in_frames`) and cached
    under ``<cache>/corners/<split>/<id>.json``.

    Returns:
        float64 (4, 2), pixels, clockwise from the back-left.
    Raises:
        ValueError: no keyboard found (names the video).
    """
    if perf.corners_px is not None:
        return perf.corners_px
    path = perf.cache_root / "corners" / perf.split / f"{perf.id}.json"
    if path.is_file():
        return np.asarray(json.loads(path.read_text())["corners_px"], np.float64).reshape(4, 2)
    from avfusion.detect import detect_keyboard_in_frames

    picked: list[np.ndarray] = []
    next_t = 0.0
    for t, img in iter_performance_frames(perf, gray=True):
        if t >= next_t:
            picked.append(img)
            next_t = t + 1.0
        if t > 30.0 or len(picked) >= 32:
            break
    det = detect_keyboard_in_frames(picked) if picked else None
    if det is None:
        raise ValueError(
            f"{perf.video_path}: no keyboard found in the first frames; this dataset gives no "
            f'corners, so write them to {path} as {{"corners_px": [[x, y], x4]}} '
            "(clockwise from top-left)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"corners_px": det.corners_px.tolist(),
                                   "confidence": det.confidence}) + "\n")  # fmt: skip
    return np.asarray(det.corners_px, np.float64)


def rectified_frames(
    perf: Performance, width_px: int, height_px: int, cache_root: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rectified grayscale keyboard frames of a performance, cached on disk.

    Returns:
        frames: uint8 (n_frames, height_px, width_px), memory-mapped from the cache;
        times_s: float64 (n_frames,), presentation times in seconds.
    Raises:
        ValueError: no video, an unreadable one, or no corners and none detected.
    """
    import cv2

    from avfusion.keyboard import rectify_homography

    cache = (cache_root or perf.cache_root) / f"rect_{width_px}x{height_px}" / perf.split
    f_path, t_path = cache / f"{perf.id}.npy", cache / f"{perf.id}.times.npy"
    if not (f_path.is_file() and t_path.is_file()):
        h = rectify_homography(keyboard_corners(perf), width_px, height_px)
        cache.mkdir(parents=True, exist_ok=True)
        frames, times = [], []
        for t, img in iter_performance_frames(perf, gray=True):
            frames.append(
                cv2.warpPerspective(img, h, (width_px, height_px), flags=cv2.INTER_LINEAR)
            )
            times.append(t)
        if not frames:
            raise ValueError(f"{perf.video_path}: the video has no frames")
        with atomic_path(t_path) as tmp:
            np.save(tmp, np.asarray(times, np.float64))
        with atomic_path(f_path) as tmp:
            np.save(tmp, np.stack(frames).astype(np.uint8))
    return np.load(f_path, mmap_mode="r"), np.load(t_path)


def timbre_audio(perf: Performance, soundfont: str, n_samples: int | None = None) -> np.ndarray:
    """A corpus performance's reference audio played by another piano: its notes and pedal
    rendered again with ``soundfont`` (GM program 0) and the rest of its sound as drawn by the
    synthesiser (reverb, EQ, stereo mix, level; ``meta.json``). Cached under
    ``<cache>/timbre/<soundfont>/<split>/<id>.npy``.

    Timbre augmentation (the test split's piano is never heard in training), and with
    ``eval.swap_piano`` a diagnosis of piece against piano; measured in
    ``experiments/runs/cpu-small-timbre``.

    Args:
        perf: a performance of the synthetic corpus (its folder holds ``meta.json``).
        soundfont: a name of :data:`avfusion.config.TIMBRE_SOUNDFONTS` or
            :data:`avfusion.config.SOUNDFONTS`, or an .sf2/.sf3 path.
        n_samples: length of the result (zero-padded or cut), default the rendered length.
    Returns:
        float32 (n_samples,), 16 kHz mono, memory-mapped from the cache.
    Raises:
        ValueError: ``soundfont`` is a test-split piano, or the performance has no
            ``meta.json`` with its sound (not a corpus performance).
        FileNotFoundError: the soundfont file is missing.
    """
    from avfusion.config import SPLIT_SOUNDFONTS, find_soundfont

    name, path = find_soundfont(soundfont)
    if name in SPLIT_SOUNDFONTS["test"]:
        raise ValueError(f"timbre soundfont {soundfont}: it is the test split's piano")
    cache = perf.cache_root / "timbre" / name / perf.split / f"{perf.id}.npy"
    if not cache.is_file():
        import dataclasses as dc

        from avfusion.synth.render_audio import AudioParams, render_audio

        meta_path = perf.folder / "meta.json"
        try:
            sound = json.loads(meta_path.read_text())["audio"]
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{meta_path}: no synthesiser sound to re-render ({e})") from e
        params = dc.replace(
            AudioParams(**sound), soundfont=name, soundfont_path=str(path), program=0
        )
        audio = render_audio(perf.notes(), perf.duration_s, params)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            np.save(tmp, audio.astype(np.float32))
    audio = np.load(cache, mmap_mode="r")
    if n_samples is not None and len(audio) != n_samples:
        audio = np.pad(audio[:n_samples], (0, max(0, n_samples - len(audio))))
    return audio


@dataclass
class _Loaded:
    perf: Performance
    audio: np.ndarray
    frames: np.ndarray
    times_s: np.ndarray
    labels: dict[str, np.ndarray]
    timbres: list[np.ndarray] = field(default_factory=list)  # the same audio, other pianos


def load_performance(perf: Performance, cfg: DataConfig, *, video: bool = True) -> _Loaded:
    """Audio (clean reference; silence when the performance has none), cached rectified
    frames (one blank frame when it has no video, or with ``video=False``, for audio-only
    training) and labels of a whole performance."""
    audio = perf.load_audio(cfg.sample_rate_hz)
    if perf.video_path is not None and video:
        frames, times = rectified_frames(perf, cfg.rect_width_px, cfg.rect_height_px)
    else:  # audio-only dataset (MAESTRO, MAPS): one blank frame, for the audio mode
        frames = np.zeros((1, cfg.rect_height_px, cfg.rect_width_px), np.uint8)
        times = np.zeros(1, np.float64)
    labels = make_labels(perf.notes(), cfg.n_frames(len(audio)), cfg.frame_rate_hz)
    return _Loaded(perf, audio, frames, times, labels)


def augment_video(frames: np.ndarray, cfg: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness and contrast, blur, corner jitter (a small x shift and scale of the
    rectified image), low light (the whole window's grey levels times a gain drawn from
    ``cfg.low_light_gain``, with probability ``cfg.p_low_light``), sensor noise (Gaussian, standard
    deviation drawn from ``cfg.sensor_noise_sd`` grey levels, with probability
    ``cfg.p_sensor_noise``; added after the gain, as a camera's read noise is), an occluder
    (with probability ``cfg.p_occlusion``: `occlude`) and dropped frames (a frame repeats the
    previous one). A probability of 0 draws nothing from ``rng``.

    Args:
        frames: uint8 (T, H, W).
    Returns:
        uint8 (T, H, W), a new array.
    """
    import cv2

    x = frames.astype(np.float32)  # a new array: the operations below work in place
    if rng.random() < cfg.p_video_aug:
        contrast = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
        x -= 128.0
        x *= contrast
        x += 128.0 * (1 + rng.uniform(-cfg.brightness, cfg.brightness))
        _, h, w = x.shape
        shift = rng.uniform(-cfg.corner_jitter_px, cfg.corner_jitter_px)
        scale = 1 + rng.uniform(-cfg.corner_jitter_px, cfg.corner_jitter_px) / w
        dy = rng.uniform(-cfg.corner_jitter_px / 2, cfg.corner_jitter_px / 2)
        m = np.array([[scale, 0, shift + (1 - scale) * w / 2], [0, 1, dy]], dtype=np.float32)
        sigma = rng.uniform(*cfg.blur_sigma_px)
        for i in range(len(x)):
            x[i] = cv2.warpAffine(x[i], m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            if sigma > 0.2:
                x[i] = cv2.GaussianBlur(x[i], (0, 0), sigma)
    if cfg.p_low_light > 0 and rng.random() < cfg.p_low_light:
        x *= rng.uniform(*cfg.low_light_gain)
    if cfg.p_sensor_noise > 0 and rng.random() < cfg.p_sensor_noise:
        noise = rng.standard_normal(x.shape, dtype=np.float32)
        noise *= rng.uniform(*cfg.sensor_noise_sd)
        x += noise
    if cfg.p_occlusion > 0 and rng.random() < cfg.p_occlusion:
        occlude(x, cfg.occlusion_width, cfg.occlusion_time, rng)
    drop = rng.random(len(x)) < cfg.p_dropped_frame
    for j in np.flatnonzero(drop):
        if j > 0:
            x[j] = x[j - 1]
    return np.clip(x, 0, 255, out=x).astype(np.uint8)


def _check_shares(name: str, shares: Sequence[float]) -> None:
    """Raise ValueError unless ``shares`` is ``(low, high)`` with 0 < low <= high <= 1."""
    lo, hi = shares
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"{name}: expected 0 < low <= high <= 1, got ({lo}, {hi})")


OCCLUDER_FILLS = ("flat", "ramp", "texture")
"""How `occlude` fills its patch, drawn uniformly."""


def occlude(
    x: np.ndarray,
    width: tuple[float, float],
    time_share: tuple[float, float],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Cover part of the keyboard with one occluder, in place (training augmentation, so a
    model learns that keys it cannot see are unknown, not up).

    The patch spans the full key depth (all rows) and a share of the width drawn uniformly
    from ``width`` at a random place, for one interval of a share of the frames drawn from
    ``time_share``. Its fill is drawn from `OCCLUDER_FILLS`: one grey level (20..235), a
    linear ramp across the patch between two grey levels, or a smoothed Gaussian texture
    (mean 20..235, SD 10..40 grey levels) that stays put while it covers the keys.

    Args:
        x: float32 (T, H, W) grey levels 0..255, changed in place.
        width, time_share: (low, high) shares in (0, 1].
        rng: the random generator.
    Returns:
        ``{x_px: [x0, x1], frames: [t0, t1], fill}`` (pixels and frame indices, end-exclusive).
    Raises:
        ValueError: a share outside (0, 1] or low > high.
    """
    import cv2

    _check_shares("occlusion_width", width)
    _check_shares("occlusion_time", time_share)
    n_frames, h, w = x.shape
    w_px = max(1, round(w * rng.uniform(*width)))
    x0 = int(rng.integers(0, w - w_px + 1))
    t_len = max(1, round(n_frames * rng.uniform(*time_share)))
    t0 = int(rng.integers(0, n_frames - t_len + 1))
    fill = OCCLUDER_FILLS[int(rng.integers(len(OCCLUDER_FILLS)))]
    patch: np.ndarray
    if fill == "flat":
        patch = np.full((h, w_px), rng.uniform(20, 235), np.float32)
    elif fill == "ramp":
        a, b = rng.uniform(20, 235, size=2)
        patch = np.broadcast_to(np.linspace(a, b, w_px, dtype=np.float32), (h, w_px))
    else:
        white = rng.standard_normal((h, w_px)).astype(np.float32)
        smooth = np.asarray(cv2.GaussianBlur(white, (0, 0), 2.0), np.float32)
        smooth *= rng.uniform(10, 40) / (smooth.std() + 1e-6)
        patch = np.clip(smooth + rng.uniform(20, 235), 0, 255)
    x[t0 : t0 + t_len, :, x0 : x0 + w_px] = patch
    return {"x_px": [x0, x0 + w_px], "frames": [t0, t0 + t_len], "fill": fill}


class WindowDataset(Dataset):
    """Random windows of a corpus split, degraded and augmented on the fly.

    Each item is a dict of tensors: ``audio`` float32 (n_samples,), ``video`` uint8
    (T_v, H, W), ``video_times_s`` float32 (T_v,) relative to the window start (with the
    drawn audio-video offset), and the labels ``onset``, ``frame``, ``offset``,
    ``velocity`` (T, 88) and ``pedal`` (T,). Every window holds the same number of video
    frames (``ceil(window_s · max_fps) + 2``), padding by repeating the last frame.

    With ``train=False`` windows are fixed (evenly spaced), clean and unaugmented: a
    reproducible validation set. ``performances`` (e.g. from :mod:`avfusion.datasets`)
    replaces the corpus split ``root``/``split``. With ``video=False`` (audio-only
    training) no frames are read or augmented and ``video`` is one blank frame. With
    ``cfg.p_timbre > 0`` (training only), that share of windows takes its clean audio from a
    corpus performance re-rendered with one of ``cfg.timbre_soundfonts``
    (:func:`timbre_audio`, rendered on first use and cached).

    Raises:
        ValueError: no performances, or ``p_timbre`` outside [0, 1] or without soundfonts.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        cfg: DataConfig,
        *,
        train: bool = True,
        seed: int = 0,
        bank: object = None,
        max_performances: int | None = None,
        performances: Sequence[Performance] | None = None,
        video: bool = True,
    ):
        from avfusion.noise import DegradationSampler, SamplerConfig

        if not 0.0 <= cfg.p_timbre <= 1.0 or (cfg.p_timbre > 0 and not cfg.timbre_soundfonts):
            raise ValueError(
                f"p_timbre {cfg.p_timbre}: must be in [0, 1], and above 0 only with "
                f"timbre_soundfonts (given {list(cfg.timbre_soundfonts)})"
            )
        self.cfg = cfg
        self.train = train
        self.seed = seed
        perfs = list(performances if performances is not None
                     else list_performances(root, split))[:max_performances]  # fmt: skip
        if not perfs:
            raise ValueError(f"{root}: no performances in split {split!r}")
        self.video = video
        self.items = [load_performance(p, cfg, video=video) for p in perfs]
        if train and cfg.p_timbre > 0:
            from tqdm.auto import tqdm

            corpus = [it for it in self.items if it.perf.dataset == "corpus"]
            jobs = [(it, sf) for it in corpus for sf in cfg.timbre_soundfonts]
            for it, sf in tqdm(jobs, desc="timbre renders", unit="perf", mininterval=5):
                it.timbres.append(timbre_audio(it.perf, sf, len(it.audio)))
        self.n_samples = round(cfg.window_s * cfg.sample_rate_hz)
        self.n_frames = cfg.n_frames(self.n_samples)
        self.n_video = (int(np.ceil(cfg.window_s * max(max(p.fps for p in perfs), 1.0))) + 2
                        if video else 1)  # fmt: skip
        self.sampler = (
            DegradationSampler(SamplerConfig.from_dict(cfg.degradation), bank=bank)
            if train
            else None
        )
        self.epoch = 0
        lengths = np.array([len(it.audio) for it in self.items], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        if not train:
            self.fixed = [(i, s) for i, it in enumerate(self.items)
                          for s in np.arange(0, max(len(it.audio) - self.n_samples, 0) + 1, self.n_samples)]  # fmt: skip

    def __len__(self) -> int:
        return self.cfg.windows_per_epoch if self.train else len(self.fixed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train:
            i = int(rng.choice(len(self.items), p=self.weights))
            it = self.items[i]
            start = int(rng.integers(0, max(len(it.audio) - self.n_samples, 0) + 1))
        else:
            i, start = int(self.fixed[index][0]), int(self.fixed[index][1])
            it = self.items[i]
        source = it.audio
        if self.train and self.cfg.p_timbre > 0 and it.timbres and rng.random() < self.cfg.p_timbre:
            source = it.timbres[int(rng.integers(len(it.timbres)))]
        audio = np.zeros(self.n_samples, np.float32)
        seg = source[start : start + self.n_samples]
        audio[: len(seg)] = seg
        if self.sampler is not None and np.any(audio):
            audio = self.sampler(audio, rng).audio
        t0 = start / self.cfg.sample_rate_hz
        fps = it.perf.fps or 25.0  # 0: no video (its one blank frame)
        offset_s = rng.uniform(-1, 1) * self.cfg.max_av_offset_frames / fps if self.train else 0.0
        lo = max(int(np.searchsorted(it.times_s, t0 - 1.0 / fps)), 0)
        idx = np.arange(lo, lo + self.n_video).clip(0, len(it.times_s) - 1)
        frames = np.asarray(it.frames[idx])
        times = (it.times_s[idx] - t0 + offset_s).astype(np.float32)
        if self.train and self.video:  # (drawn after the audio: audio-only windows are
            frames = augment_video(frames, self.cfg, rng)  # the same with or without video)
        f0 = round(t0 * self.cfg.frame_rate_hz)
        out = {
            "audio": torch.from_numpy(audio),
            "video": torch.from_numpy(frames),
            "video_times_s": torch.from_numpy(times),
        }
        for k, v in it.labels.items():
            lab = np.zeros((self.n_frames, *v.shape[1:]), np.float32)
            part = v[f0 : f0 + self.n_frames]
            lab[: len(part)] = part
            out[k] = torch.from_numpy(lab)
        return out
