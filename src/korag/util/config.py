"""Settings as pydantic models, and the one way korag reads them from YAML and ``--set``.

Recipes and commands apply ``--set a.b=c`` overrides to the raw YAML mapping before validation,
the value parsed as a YAML scalar (``1.2`` is a number, ``[a, b]`` a list, ``null`` None). Every
model is strict (`StrictModel`): an unknown key is an error, because a typo must not be silently
ignored. Validation errors become one line naming each field's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from korag.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A settings model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"runs.bm25.k1=1.2"`` → (["runs", "bm25", "k1"], 1.2)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    path = key.strip().split(".")
    if any(not p for p in path):
        raise ConfigError(f"--set {item!r}: empty component in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return path, value


def set_path(raw: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``raw[path[0]][path[1]]… = value``, creating missing mappings on the way (a value that
    is not a mapping is not replaced: that is a `ConfigError`)."""
    node = raw
    for part in path[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"'{part}' is not a mapping")
        node = nxt
    node[path[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to `raw` (in place) and return it."""
    for item in overrides:
        path, value = parse_override(item)
        try:
            set_path(raw, path, value)
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from None
    return raw


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a YAML mapping of settings")
    return raw


def format_validation(where: str, exc: ValidationError, *, tagged: bool = False) -> str:
    """One line naming each invalid field by its path (`tagged`: the model is a discriminated
    union, whose errors start with the chosen member's tag, which is not part of the path)."""
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"][1 if tagged and len(e["loc"]) > 1 else 0 :])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{where}: " + "; ".join(parts)


def validate(model: type[M] | TypeAdapter, raw: Any, *, where: str) -> M:
    """`model` (a model class or a `TypeAdapter`) from `raw`, or a `ConfigError` naming every
    bad field."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(raw)
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation(where, exc, tagged=isinstance(model, TypeAdapter))) from None


def field_info(model: type[BaseModel], path: str) -> FieldInfo:
    """The pydantic field at a dotted `path` of `model` (through nested models)."""
    current: type[BaseModel] = model
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part not in current.model_fields:
            raise KeyError(f"{model.__name__} has no field {path!r}")
        info = current.model_fields[part]
        if i == len(parts) - 1:
            return info
        nested = _model_of(info.annotation)
        if nested is None:
            raise KeyError(f"{model.__name__}.{'.'.join(parts[: i + 1])} is not a nested model")
        current = nested
    raise KeyError(path)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as ``X``, ``X | None`` or ``Optional[X]``."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every settable path of `model`: its scalar fields and, through nested models, theirs."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        path = f"{prefix}{name}"
        if nested is not None:
            paths.extend(leaf_paths(nested, path + "."))
        else:
            paths.append(path)
    return paths
