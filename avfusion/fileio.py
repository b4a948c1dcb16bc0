"""Atomic file writing: write to a temporary sibling, then rename, so that no partial or
corrupt output is ever left under the final name."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary file keeps ``path``'s suffix, so writers that choose a format by suffix
    (soundfile, PyAV, matplotlib) still do. On any exception the temporary file is removed.

    Raises:
        OSError: if the folder of ``path`` does not exist or is not writable (names the path).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OSError(f"{path}: output folder {folder} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=folder
        )
    except OSError as exc:
        raise OSError(f"{path}: cannot write in {folder}: {exc.strerror}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, doc: object) -> Path:
    """Write ``doc`` as indented JSON (one space, a final newline) to ``path`` atomically
    (`atomic_path`), making its folder first.

    Raises:
        OSError: the folder cannot be made or written (names the path).
        TypeError: ``doc`` holds a value JSON cannot encode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
