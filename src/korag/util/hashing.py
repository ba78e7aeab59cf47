"""Content hashes: of a file, and of a file or directory as a data fingerprint.

One home for hashing so that every identity in korag (a data source's fingerprint in a stage
key, a GGUF file's cache key, an exported zip's ``model_content_hash_value``) is the same
SHA-256 over the same bytes. A directory's fingerprint streams every file's bytes into one
hash, as it always has: changing that would change every stage key of folder data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from korag.errors import DataError


def _update(h, path: Path) -> None:
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's files (relative paths and bytes, sorted).

    Hidden files and directories (a leading dot) are ignored, as the folder reader ignores them.
    """
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    if not p.is_dir():
        raise DataError(p, "no such file or directory")
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        rel = f.relative_to(p)
        if any(part.startswith(".") for part in rel.parts):
            continue
        h.update(rel.as_posix().encode("utf-8") + b"\0")
        _update(h, f)
        h.update(b"\0")
    return h.hexdigest()
