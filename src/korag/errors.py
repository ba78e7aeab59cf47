"""The errors korag raises on purpose.

Every error a user can cause (bad input data, a bad recipe, a missing artifact) is a
`KoragError`. The CLI prints such errors as one line and exits non-zero; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class KoragError(Exception):
    """Base class for errors caused by input, configuration or state — not by korag bugs."""


class DataError(KoragError):
    """A problem in an input file, located by file, record and field.

    `record` is what a user can find in the file: a 1-based line number for line-oriented
    formats, a record number or an id for JSON documents, a page number for PDFs.
    """

    def __init__(
        self,
        source: str | Path | None,
        message: str,
        *,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.record = record
        self.field = field
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source)
        if self.record is not None:
            parts.append(str(self.record))
        if self.field:
            parts.append(f"field '{self.field}'")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __reduce__(self):  # keeps the error intact across process pools
        return (
            _rebuild_data_error,
            (self.source, self.message, self.record, self.field),
        )


def _rebuild_data_error(source, message, record, field) -> DataError:
    return DataError(source, message, record=record, field=field)


class ConfigError(KoragError):
    """An invalid recipe, parameter or command-line option."""


class MissingArtifactError(KoragError):
    """A stage needs an artifact that is not in the store."""


class ModelError(KoragError):
    """A model or tokenizer cannot be loaded from the given path or name."""
