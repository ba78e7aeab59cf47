"""Reading files so that every problem is reported with its file, line or record, and field.

Readers build on these helpers instead of calling `json.load` or `open` directly, so that a
non-UTF-8 byte, a broken JSON line or a missing field becomes a `DataError` a user can act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from korag.errors import DataError

T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def read_text(path: str | Path) -> str:
    """Read a whole file as strict UTF-8 (a BOM is dropped)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(p, "file not found") from None
    except IsADirectoryError:
        raise DataError(p, "is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(p, f"cannot read file: {exc.strerror}") from None
    return decode_utf8(data, p)


def decode_utf8(data: bytes, source: str | Path, first_line: int = 1) -> str:
    """Decode bytes as UTF-8, naming the line and byte of the first invalid sequence.

    `first_line` is the line number of the first byte, for callers that decode line by line.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + first_line
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            source,
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte column {column}); "
            "convert the file to UTF-8 (e.g. iconv -f cp949 -t utf-8)",
            record=f"line {line}",
        ) from None


def load_json(path: str | Path) -> Any:
    """Parse a JSON document, naming the line and column of a syntax error."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", record=f"line {exc.lineno}") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON Lines file."""
    p = Path(path)
    try:
        fh = p.open("rb")
    except FileNotFoundError:
        raise DataError(p, "file not found") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            line = decode_utf8(raw, p, first_line=lineno)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(p, f"malformed JSON: {exc.msg} (column {exc.colno})", record=f"line {lineno}") from None
            if not isinstance(obj, dict):
                raise DataError(p, f"expected a JSON object, got {type(obj).__name__}", record=f"line {lineno}")
            yield lineno, obj


def field(
    obj: dict[str, Any],
    name: str,
    kind: type[T],
    *,
    source: str | Path,
    record: str,
    path: str | None = None,
    default: Any = ...,
    nonempty: bool = False,
) -> T:
    """Fetch `obj[name]`, checking its type; `path` is how the field is named in errors."""
    label = path or name
    if name not in obj or obj[name] is None:
        if default is not ...:
            return default
        raise DataError(source, "missing field", record=record, field=label)
    value = obj[name]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise DataError(
            source,
            f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {type(value).__name__}",
            record=record,
            field=label,
        )
    if nonempty and isinstance(value, str) and not value.strip():
        raise DataError(source, "is empty", record=record, field=label)
    return value


def id_field(obj: dict[str, Any], name: str, *, source: str | Path, record: str) -> str:
    """An id given as a string or an integer (BEIR and KorQuAD 2.0 both use either), as a string."""
    if name not in obj or obj[name] is None:
        raise DataError(source, "missing field", record=record, field=name)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(
            source, f"expected a string or integer id, got {type(value).__name__}", record=record, field=name
        )
    value = str(value)
    if not value.strip():
        raise DataError(source, "is empty", record=record, field=name)
    return value
