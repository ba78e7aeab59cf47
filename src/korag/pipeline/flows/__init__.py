"""The flows a recipe can name, one module each: its recipe model (with ``plan()``) and stages.

Adding a flow: write ``flows/<name>.py`` with a recipe model that subclasses
`korag.pipeline.flows.common.RecipeBase`, has ``flow: Literal["<name>"]`` and implements
``plan(command)``; list it in `RECIPES` below. Nothing registers itself on import.
"""

from __future__ import annotations

from korag.pipeline.flows.bm25 import BM25Recipe
from korag.pipeline.flows.enhance import EnhanceRecipe
from korag.pipeline.flows.pqa import PQARecipe

RECIPES = {"bm25": BM25Recipe, "enhance": EnhanceRecipe, "pqa": PQARecipe}
DEFAULT_FLOW = "bm25"
