"""The artifact store: one directory per (stage, key), complete only once it has a manifest.

Layout::

    <workspace>/<stage>/<key>/            outputs of one stage run
    <workspace>/<stage>/<key>/manifest.json
    <workspace>/.locks/<stage>-<key>.lock

A stage writes into a temporary sibling directory; the manifest is written there last, and
the directory is then renamed into place in one atomic step. So a `<key>` directory either
does not exist or is complete, and a crash leaves only a ``.<key>.*.tmp`` directory that is
never read as a result (and is removed the next time that stage runs). A per-key file lock
makes two processes on one workspace run a stage once: the second waits, then finds it done.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from korag import atomic
from korag.errors import MissingArtifactError
from korag.pipeline.artifacts import TypedOutputs

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact(TypedOutputs):
    """A complete stage output, opened through the accessors of its kind."""

    stage: str
    key: str
    path: Path
    manifest: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        """What the stage reported (timings, counts, scores)."""
        return self.manifest.get("metrics", {})


@dataclass(frozen=True)
class StoreEntry:
    """One directory of the store as `korag status` shows it."""

    stage: str
    key: str
    path: Path
    complete: bool
    manifest: dict[str, Any] | None


class ArtifactStore:
    """Content-addressed stage outputs under one workspace directory."""

    def __init__(self, workspace: str | Path) -> None:
        self.root = Path(workspace).expanduser().resolve()

    def path(self, stage: str, key: str) -> Path:
        """Where the output of `stage` with `key` lives (whether or not it exists)."""
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Artifact | None:
        """The complete artifact, or None if it is missing or incomplete."""
        d = self.path(stage, key)
        m = d / MANIFEST
        if not m.is_file():
            return None
        try:
            manifest = json.loads(m.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return Artifact(stage, key, d, manifest)

    def require(self, stage: str, key: str, *, needed_by: str, produced_by: str | None = None) -> Artifact:
        """The artifact, or a `MissingArtifactError` naming the stage that makes it."""
        art = self.get(stage, key)
        if art is None:
            who = f"stage '{stage}'" + (f" (task '{produced_by}')" if produced_by else "")
            raise MissingArtifactError(
                f"'{needed_by}' needs the output of {who}, key {key}, which is not in {self.root}; "
                f"run that stage first (korag run without --only runs everything needed)"
            )
        return art

    @contextlib.contextmanager
    def lock(self, stage: str, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold the per-key lock (blocking by default)."""
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_dir / f"{stage}-{key}.lock"), timeout=timeout):
            yield

    def _remove_stale(self, stage: str, key: str) -> None:
        # Called with the key's lock held: any temporary directory for it is a crash's leftover.
        stage_dir = self.root / stage
        if stage_dir.is_dir():
            for tmp in stage_dir.glob(f".{key}.*.tmp"):
                shutil.rmtree(tmp, ignore_errors=True)
        final = self.path(stage, key)
        if final.is_dir() and not (final / MANIFEST).is_file():
            shutil.rmtree(final, ignore_errors=True)

    def scratch(self, stage: str, key: str) -> Path:
        """A directory that survives a crash of the task writing `key`, for stages that resume
        (e.g. generation appends per document); it is removed once the artifact is published."""
        return self.root / stage / f".{key}.resume"  # created by the stage that uses it

    @contextlib.contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """A temporary directory to fill; it becomes the artifact when the block ends without error.

        The caller writes ``manifest.json`` last (see `write_manifest`). Without one, the
        block's directory is discarded instead of published.
        """
        self._remove_stale(stage, key)
        with atomic.atomic_directory(self.path(stage, key), overwrite=True) as tmp:
            yield tmp
            if not (tmp / MANIFEST).is_file():
                raise RuntimeError(f"stage {stage} finished without writing its manifest")
        shutil.rmtree(self.root / stage / f".{key}.resume", ignore_errors=True)

    @staticmethod
    def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
        """Write the manifest atomically (the last file of a stage output)."""
        atomic.write_json(directory / MANIFEST, manifest)

    def entries(self) -> list[StoreEntry]:
        """Every stage directory in the workspace, complete or not, including crash leftovers."""
        out: list[StoreEntry] = []
        if not self.root.is_dir():
            return out
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for d in sorted(stage_dir.iterdir()):
                if not d.is_dir():
                    continue
                if d.name.startswith("."):
                    key = d.name[1:].split(".", 1)[0]
                    out.append(StoreEntry(stage_dir.name, key, d, False, None))
                    continue
                art = self.get(stage_dir.name, d.name)
                out.append(StoreEntry(stage_dir.name, d.name, d, art is not None, art.manifest if art else None))
        return out

    def is_locked(self, stage: str, key: str) -> bool:
        """True while another process is running this stage and key (asking creates nothing)."""
        if not (self.root / ".locks" / f"{stage}-{key}.lock").exists():
            return False
        try:
            with self.lock(stage, key, timeout=0):
                return False
        except Timeout:
            return True
