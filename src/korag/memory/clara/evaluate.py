"""`korag eval clara` as a library function: one or several CLaRa models (e.g. compression rates)
on ml-clara records or on questions about a user's corpus, beside closed-book and full-text RAG
from the same base LM, in one table of typed rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from korag.errors import ConfigError
from korag.eval.comparison import System, SystemRow


@dataclass
class ClaraEvaluation:
    """The rows, how many questions and documents per question, and a line about the corpus."""

    rows: list[SystemRow]
    questions: int
    k: int
    note: str = ""


def evaluate_models(
    models: Sequence[Path],
    data: Path,
    *,
    corpus: Path | None = None,
    k: int | None = None,
    chunk_tokens: int = 80,
    baselines: Sequence[str] = ("closed-book", "full-text"),
    limit: int | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    show_progress: bool = False,
) -> ClaraEvaluation:
    """Evaluate each model in `models` on `data` (ml-clara stage-2/3 JSONL, or questions JSONL over
    `corpus`); baselines run once per base LM. Compressed documents are cached per model under
    `cache_dir` (they depend only on the model and the text)."""
    from korag.memory.clara.data import read_clara_jsonl
    from korag.memory.clara.inference import ClaraReader, evaluate_clara
    from korag.memory.clara.store import load_clara, model_identity
    from korag.models.device import resolve_device

    if not models:
        raise ConfigError("give at least one CLaRa model")
    device = resolve_device(device)
    clara, info = load_clara(models[0], device=device)
    k = k or clara.config.top_k
    note = ""
    if corpus is not None:
        from korag.data.questions import read_questions_jsonl
        from korag.memory.clara.corpus_qa import answer_recall, questions_over

        questions = read_questions_jsonl(data)[:limit] if limit else read_questions_jsonl(data)
        passages, examples = questions_over(
            str(corpus), questions, k=k, max_tokens=chunk_tokens, show_progress=show_progress
        )
        note = (
            f"{corpus}: {len(passages)} passages; BM25 top-{k} holds a reference answer for "
            f"{100 * answer_recall(examples, k):.0f}% of {len(examples)} questions"
        )
    else:
        examples = read_clara_jsonl(data, 2)[:limit] if limit else read_clara_jsonl(data, 2)
    rows: list[SystemRow] = []
    bases_done: set[str] = set()
    for i, path in enumerate(models):
        if i:
            del clara
            clara, info = load_clara(path, device=device)
        identity = model_identity(path)
        reader = ClaraReader(clara, identity=identity, cache_dir=cache_dir / identity if cache_dir else None)
        base = str(info.get("base", ""))
        got = evaluate_clara(
            reader, examples, k=k, baselines=[] if base in bases_done else baselines, show_progress=show_progress
        )
        bases_done.add(base)
        for row in got:
            if len(models) > 1 and row.system in (System.CLARA, System.CLARA_REASONER):
                run = path.parent.name if path.name == "model" else path.name
                row.label = f"{row.label} ×{clara.config.compression_rate} {run}"
                row.detail["model"] = str(path)
            if any(r.label == row.label for r in rows):
                raise ConfigError(f"two models would share the row {row.label!r}; give them distinct directories")
            rows.append(row)
    return ClaraEvaluation(rows, len(examples), k, note)
