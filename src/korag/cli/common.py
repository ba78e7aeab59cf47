"""What every command group shares: the two consoles, common options, configs from
``--config FILE --set a.b=c`` plus a few flags, and one-line errors for missing extras.

A setting lives in one place, the library's pydantic config. A command takes ``--config`` (a
YAML file of that config) and ``--set key.path=value`` for any field, and offers the handful of
everyday settings as flags; a flag's help and default come from the config's field, and its
value (when given) is set at the field's path, so neither is declared twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from korag.errors import ConfigError
from korag.util.config import apply_overrides, field_info, load_yaml_mapping, set_path, validate
from korag.util.extras import require_extra

out = Console()
err = Console(stderr=True)

M = TypeVar("M", bound=BaseModel)
__all__ = ["config_from", "err", "flag", "flag_help", "out", "require_extra"]

WorkspaceOpt = Annotated[Path, typer.Option("--workspace", "-w", help="artifact store directory")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="set a value: key.path=value (repeatable)")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="settings as a YAML file (see --show-config)")]
ShowConfigOpt = Annotated[bool, typer.Option("--show-config", help="print the effective settings as YAML and exit")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace an existing output")]


def flag_help(model: type[BaseModel], path: str, extra: str = "", *, with_default: bool = True) -> str:
    """Help text of a flag that sets `path` of `model`: the field's description and (unless the
    command gives the unset flag another meaning) its default."""
    info = field_info(model, path)
    text = info.description or path.rsplit(".", 1)[-1].replace("_", " ")
    if extra:
        text = f"{text}; {extra}"
    if with_default and not info.is_required():
        default = info.get_default(call_default_factory=True)
        if default is not None:
            text += f" [default: {default.model_dump() if isinstance(default, BaseModel) else default}]"
    return text


def flag(kind: type, model: type[BaseModel], path: str, *names: str, extra: str = "", with_default: bool = True) -> Any:
    """The annotation of a flag that sets `path` of `model`: optional (None: not given, the config
    decides), help and default from the field, `names` to spell it (e.g. ``"--lora/--full"``).
    `with_default=False` where leaving the flag unset means something else than the default."""
    help_ = flag_help(model, path, extra, with_default=with_default)
    return Annotated[kind | None, typer.Option(*names, help=help_, show_default=False)]


def config_from(
    model: type[M],
    *,
    config: Path | None = None,
    sets: list[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    show: bool = False,
) -> M:
    """The command's settings: the YAML file, then each flag that was given (its key is the field
    path), then ``--set`` values, validated by `model`. With `show`, print them and exit."""
    raw: dict[str, Any] = load_yaml_mapping(config) if config else {}
    for path, value in (flags or {}).items():
        if value is not None:
            set_path(raw, path.split("."), value)
    apply_overrides(raw, sets or [])
    settings = validate(model, raw, where=str(config) if config else "settings")
    if show:
        import yaml

        out.print(yaml.safe_dump(settings.model_dump(mode="json"), allow_unicode=True, sort_keys=False), end="")
        raise typer.Exit()
    return settings


def print_load_report(report) -> None:
    """What a load skipped (one line per file) and warned about, on stderr."""
    from rich.markup import escape

    for file, reason in report.skipped:
        err.print(f"[yellow]skipped[/] {escape(reason if reason.startswith(file) else f'{file}: {reason}')}")
    for warning in report.warnings:
        err.print(f"[yellow]warning[/] {escape(warning)}")


def check_k(k: int, name: str = "--k") -> int:
    """A result count: at least 1."""
    if k < 1:
        raise ConfigError(f"{name} must be at least 1 (got {k})")
    return k
