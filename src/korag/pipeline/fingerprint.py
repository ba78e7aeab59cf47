"""Content fingerprints of input data, so a changed file re-runs the stages that read it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from korag.errors import DataError

_CHUNK = 1 << 20


def _hash_file(path: Path, h) -> None:
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's files (relative paths and bytes, sorted).

    Hidden files and directories (a leading dot) are ignored, as the folder reader ignores them.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        _hash_file(p, h)
    elif p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            rel = f.relative_to(p)
            if any(part.startswith(".") for part in rel.parts):
                continue
            h.update(rel.as_posix().encode("utf-8") + b"\0")
            _hash_file(f, h)
            h.update(b"\0")
    else:
        raise DataError(p, "no such file or directory")
    return h.hexdigest()
