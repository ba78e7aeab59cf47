"""Korean–English synonym expansion for BM25 on the built-in sample set, per question kind.

    python bench/synonyms_sample.py [--model bench/work/e5-small] [--output bench/results/synonyms_sample.json]

Builds synonym dictionaries from the sample corpus — bracket glosses (``광합성(photosynthesis)``)
and, when the offline multilingual-e5-small directory exists, embedding mutual nearest
neighbours between the corpus' Korean terms and English words — then runs BM25 (bigram-stem,
defaults) with and without query expansion and reports MRR@10 and Recall@5 for each kind of
question: ``factoid``, ``english-term`` (an English term for a concept the passage names in
Korean) and ``korean-term`` (the reverse).

With ``--llm MODEL`` (e.g. ``gemma3-270m``) it also measures LLM verification: the model answers
the yes/no prompt for every bracket-gloss pair (true pairs) and for the same pairs with their
English sides rotated (false pairs); reported are how many answers parse, accuracy, and the
precision/recall of "yes".

One extra dictionary is clearly not corpus-only: "patterns + embedding (query terms)" pairs the corpus'
Korean terms with English words taken from the *questions*, the way a synonym miner would use a
query log. It shows what embedding mining could add when the English vocabulary is known; it
is not a fair held-out number.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from korag import atomic
from korag.data.sample import load_sample, question_kinds
from korag.eval.ir import evaluate_ranking
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.expansion import QueryExpansion
from korag.synth.synonyms import corpus_terms, embedding_candidates, pattern_candidates
from korag.text.synonyms import SynonymDict

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["mrr@10", "recall@5"]
KINDS = ["factoid", "english-term", "korean-term"]
WEIGHTS = [0.25, 0.5, 1.0]
EMBEDDING_THRESHOLD = 0.9


def per_kind(ranking, qrels, kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean metrics over all questions and over each kind."""
    res = evaluate_ranking(ranking, qrels, METRICS)
    out: dict[str, dict[str, float]] = {"all": {m: float(res.metrics[m]) for m in METRICS}}
    for kind in KINDS:
        mask = np.array([kinds[q] == kind for q in res.query_ids])
        out[kind] = {m: float(res.per_query[m][mask].mean()) for m in METRICS}
        out[kind]["questions"] = int(mask.sum())
    return out


def build_dictionaries(qa, model: Path, console: Console) -> dict[str, SynonymDict]:
    patterns = SynonymDict(pattern_candidates(qa.corpus.texts))
    dicts = {"patterns": patterns}
    if not (model / "modules.json").is_file():
        console.print(f"[yellow]{model} not found: skipping the embedding dictionaries[/]")
        return dicts
    from korag.models.encoder import DenseEncoder

    encoder = DenseEncoder(model)
    korean, english = corpus_terms(qa.corpus.texts)
    t0 = time.perf_counter()
    embedded = SynonymDict(embedding_candidates(korean, english, encoder, threshold=EMBEDDING_THRESHOLD))
    console.print(
        f"embedding candidates: {len(korean)} Korean × {len(english)} English terms → {len(embedded)} pairs "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    dicts["embedding"] = embedded
    dicts["patterns + embedding"] = patterns.merge(embedded)
    _, query_english = corpus_terms([e.question for e in qa.examples])
    from_queries = SynonymDict(embedding_candidates(korean, query_english, encoder, threshold=EMBEDDING_THRESHOLD))
    dicts["patterns + embedding (query terms)"] = patterns.merge(from_queries)
    return dicts


def measure_verification(patterns: SynonymDict, llm: str, console: Console) -> dict:
    """Yes/no answers of `llm` on true pairs and on the same pairs with rotated English sides."""
    from korag.synth.generation import GenerationConfig
    from korag.synth.llm import make_generator
    from korag.synth.synonyms import parse_verdict, verification_prompt
    from korag.text.synonyms import SynonymEntry

    true = [e for e in patterns if e.english.isascii()]
    # rotate until no Korean term keeps one of its own English glosses
    shift = next(
        s
        for s in range(1, len(true))
        if all((true[i].korean, true[(i + s) % len(true)].english) not in patterns for i in range(len(true)))
    )
    false = [SynonymEntry(e.korean, true[(i + shift) % len(true)].english) for i, e in enumerate(true)]
    gen = make_generator(llm)
    cfg = GenerationConfig(max_tokens=4, temperature=0.0, stop=("\n",))
    t0 = time.perf_counter()
    answers = gen.generate([verification_prompt(e.korean, e.english) for e in true + false], cfg)
    seconds = time.perf_counter() - t0
    verdicts = [parse_verdict(a) for a in answers]
    labels = [True] * len(true) + [False] * len(false)
    parsed = [(v, y) for v, y in zip(verdicts, labels, strict=True) if v is not None]
    tp = sum(v and y for v, y in parsed)
    said_yes = sum(v for v, _ in parsed)
    result = {
        "model": llm,
        "pairs": len(labels),
        "parsed": len(parsed),
        "accuracy": sum(v == y for v, y in parsed) / len(parsed) if parsed else 0.0,
        "yes_precision": tp / said_yes if said_yes else 0.0,
        "yes_recall": tp / len(true),
        "yes_share": said_yes / len(parsed) if parsed else 0.0,
        "seconds": seconds,
    }
    table = Table(title=f"LLM verification ({llm}) on {len(true)} true and {len(false)} rotated pairs")
    for k in ("parsed", "accuracy", "yes_precision", "yes_recall", "yes_share", "seconds"):
        table.add_column(k, justify="right")
    table.add_row(
        *(
            f"{result[k]:.3f}" if isinstance(result[k], float) else str(result[k])
            for k in ("parsed", "accuracy", "yes_precision", "yes_recall", "yes_share", "seconds")
        )
    )
    console.print(table)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "bench" / "work" / "e5-small")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "synonyms_sample.json")
    ap.add_argument("--llm", default=None, help="also measure yes/no verification with this LLM")
    args = ap.parse_args()
    console = Console(width=200)

    qa = load_sample()
    rs = qa.to_retrieval_set()
    kinds = question_kinds()
    dicts = build_dictionaries(qa, args.model, console)
    retriever = BM25Retriever("bigram-stem")
    retriever.index(rs.corpus)

    rows = [
        {"dictionary": "none", "entries": 0, "weight": 0.0, **per_kind(retriever.search(rs.queries), rs.qrels, kinds)}
    ]
    for name, d in dicts.items():
        for w in WEIGHTS if name == "patterns" else [0.5]:
            expansion = QueryExpansion(d, weight=w)
            expanded = sum(bool(expansion.terms(q)) for q in rs.queries.texts)
            ranking = retriever.search(rs.queries, expansion=expansion)
            rows.append(
                {"dictionary": name, "entries": len(d), "weight": w, "expanded_queries": expanded}
                | per_kind(ranking, rs.qrels, kinds)
            )

    counts = {k: rows[0][k]["questions"] for k in KINDS}
    table = Table(title=f"BM25 (bigram-stem) on the korag sample, {len(rs.queries)} questions: MRR@10 / Recall@5")
    for col in ["dictionary", "entries", "weight", "expanded q", "all", *(f"{k} ({counts[k]})" for k in KINDS)]:
        table.add_column(col, justify="left" if col == "dictionary" else "right")
    for r in rows:
        cells = [f"{r[k]['mrr@10']:.4f} / {r[k]['recall@5']:.4f}" for k in ["all", *KINDS]]
        table.add_row(
            r["dictionary"], str(r["entries"]), f"{r['weight']:.2f}", str(r.get("expanded_queries", 0)), *cells
        )
    console.print(table)

    verification = measure_verification(dicts["patterns"], args.llm, console) if args.llm else None
    payload = {
        "verification": verification,
        "dataset": "korag-sample",
        "retriever": {"type": "bm25", "tokenizer": "bigram-stem", **retriever.params()},
        "embedding_model": str(args.model) if "embedding" in dicts else None,
        "embedding_threshold": EMBEDDING_THRESHOLD,
        "machine": {"python": platform.python_version(), "processor": platform.processor()},
        "dictionaries": {name: sorted((e.korean, e.english) for e in d) for name, d in dicts.items()},
        "results": rows,
    }
    atomic.write_json(args.output, payload)
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
