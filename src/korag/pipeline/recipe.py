"""Recipes: YAML files naming the data, the flow and its settings; validated with pydantic.

A recipe's ``flow`` (default ``bm25``) picks its model among the flows (`korag.pipeline.flows`),
a discriminated union: an unknown key is an error in every flow (a typo must not be silently
ignored). ``--set a.b=c`` overrides are applied to the raw YAML before validation (see
`korag.util.config`). A run named in ``--set runs.<name>.…`` must exist in the recipe, so that a
typo does not silently add a run; ``new_runs=True`` (``korag run --new-run``) allows adding one.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter

from korag.errors import ConfigError
from korag.pipeline.flows import DEFAULT_FLOW, RECIPES
from korag.pipeline.flows.bm25 import BM25Recipe
from korag.pipeline.flows.common import RecipeBase
from korag.pipeline.flows.enhance import EnhanceRecipe
from korag.pipeline.flows.pqa import PQARecipe
from korag.util.config import apply_overrides, load_yaml_mapping, parse_override, validate


def _flow_of(value: Any) -> str:
    if isinstance(value, dict):
        flow = value.get("flow", DEFAULT_FLOW)
        return flow if flow in RECIPES else "unknown"
    return getattr(value, "flow", DEFAULT_FLOW)


Recipe = Annotated[
    Annotated[BM25Recipe, Tag("bm25")] | Annotated[EnhanceRecipe, Tag("enhance")] | Annotated[PQARecipe, Tag("pqa")],
    Discriminator(_flow_of, custom_error_type="flow", custom_error_message=f"flow must be one of {', '.join(RECIPES)}"),
]
_RECIPE = TypeAdapter(Recipe)


def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped with korag, by name."""
    d = Path(str(resources.files("korag") / "pipeline" / "recipes"))
    return {p.stem: p for p in sorted(d.glob("*.yaml"))}


def _check_run_names(raw: dict[str, Any], overrides: Sequence[str]) -> None:
    """An override of ``runs.<name>.…`` must name a run of the recipe."""
    runs = raw.get("runs")
    if not isinstance(runs, dict):
        return
    for item in overrides:
        path, _ = parse_override(item)
        if len(path) >= 2 and path[0] == "runs" and path[1] not in runs:
            raise ConfigError(
                f"--set {item!r}: the recipe has no run {path[1]!r} (runs: {', '.join(runs)}); "
                "pass --new-run to add one"
            )


def load_recipe(
    recipe: str | Path | None = None, overrides: Sequence[str] = (), *, new_runs: bool = False
) -> RecipeBase:
    """Read a recipe file or a built-in recipe by name (``default`` when None), apply
    `overrides`, and validate."""
    spec = "default" if recipe is None else str(recipe)
    path = Path(spec)
    builtins = builtin_recipes()
    if path.is_file():
        source = path
    elif spec in builtins:
        source = builtins[spec]
    else:
        raise ConfigError(
            f"no recipe file {spec!r} and no built-in recipe of that name; built-in: {', '.join(builtins)}"
        )
    raw = load_yaml_mapping(source)
    raw.setdefault("name", source.stem)
    if not new_runs:
        _check_run_names(raw, overrides)
    apply_overrides(raw, overrides)
    parsed = validate(_RECIPE, raw, where=f"recipe {raw.get('name')!r} is invalid")  # type: ignore[arg-type]
    if parsed.data.path is None:
        raise ConfigError(f"recipe {parsed.name!r} needs a data path: korag run {spec} --set data.path=/path/to/data")
    return parsed


__all__ = ["RECIPES", "BM25Recipe", "EnhanceRecipe", "PQARecipe", "Recipe", "builtin_recipes", "load_recipe"]
