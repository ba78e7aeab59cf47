"""Does synthetic data pay for itself? Label-free adaptation on a corpus unlike Wikipedia and on
KorQuAD, and document expansion on the paraphrase scoreboard.

    python bench/synthesis.py [--teacher bench/work/reranker/model] [--steps 30] [--boards domain,korquad]

For each board the corpus is treated as unlabelled: queries are generated for every passage
(`korag synth queries`, the offline Gemma 3 270M, few-shot ``question`` prompts, greedy, the
default filters; resumable through a progress file under bench/work/synth/) together with the
LLM-free inverse-cloze and keyphrase queries, and only the human questions score:

- kobill (`korag.data.domain`): 86 passages of National Assembly bills, 159 written questions;
- KorQuAD halves: the 964 dev paragraphs, scored on the second half's questions, as in
  bench/quality.py; the paraphrase set (same corpus) is scored beside it. Queries are generated
  for a seeded random sample of ``--korquad-passages`` (200) paragraphs from both halves (all 964
  take 80 minutes of the 270M model on 2 cores): training sees the sample's queries, doc2query
  expands the sample's passages only (an unbiased, diluted estimate: gold and distractor
  paragraphs are expanded alike), and the round-trip filter ranks within the sample.

Rows: BM25 (bigram-stem) and BM25 over doc2query-expanded passages (each passage's kept LLM
queries appended to its indexed text); zero-shot E5-small; E5 trained label-free with plain MNRL
on the LLM queries and, as the ablation, on the LLM-free ones; GPL (MarginMSE on a cross-encoder
teacher's margins, BM25 + dense negatives) on the LLM queries (and, with ``--gpl-free``, on the
LLM-free ones) when a teacher is given. Every trained model runs the same number of steps (``--steps``; small sets
repeat), picks its checkpoint on held-out *generated* queries (no human label is used), and is
cached under bench/work/synth/<board>/<settings hash>/<row>/ (a rerun only scores). Prints the table and writes
bench/results/synthesis.json and bench/results/synthesis.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from korag import atomic
from korag.data.schema import Corpus, RetrievalSet
from korag.data.synthetic import SyntheticSet
from korag.eval.ir import evaluate_ranking
from quality import DEFAULT_DATA, METRICS, offline_e5, scoreboards

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "synth"
TITLES = {"domain": "kobill", "korquad": "KorQuAD halves", "paraphrase": "paraphrase"}
LLM_FREE = ("ict", "keyphrase")
console = Console(width=200)


def generated(board: str, corpus: Corpus, source: str, llm: str) -> SyntheticSet:
    """Every kept query over `corpus` (LLM and LLM-free), generated once and resumed after."""
    out = WORK / f"{board}_q.jsonl"
    cmd = [
        sys.executable, "-m", "korag.cli", "synth", "queries", source, "-o", str(out), "--styles", "question",
        "--llm", llm, "--progress", str(WORK / f"{board}_progress.jsonl"),
    ]  # fmt: skip
    console.print(f"[bold]{board}[/]: {' '.join(cmd[2:])}")
    subprocess.run(cmd, check=True)
    got = SyntheticSet.read_jsonl(out, corpus)
    console.print(f"{board}: kept queries by method {got.counts_by_method()}")
    return got


def corpus_file(board: str, corpus: Corpus) -> str:
    """The corpus as JSON Lines for `korag synth queries` (kobill has no file of its own)."""
    from korag.data.beir import write_corpus_jsonl

    path = WORK / f"{board}_corpus.jsonl"
    write_corpus_jsonl(corpus, path)
    return str(path)


def subset(s: SyntheticSet, llm: bool) -> SyntheticSet:
    """The LLM's queries, or the LLM-free ones (inverse cloze, keyphrases)."""
    return SyntheticSet(s.corpus, [q for q in s.queries if (q.method not in LLM_FREE) == llm])


def settings_tag(args) -> str:
    """The cache directory of a board's rows: every setting that changes a row's result (the
    teacher is in the GPL rows' own names), so a rerun with other settings never scores a stale
    model."""
    keys = ("llm", "korquad_passages", "steps", "batch_size", "lr", "eval_steps", "max_seq_length")
    return hashlib.sha1(json.dumps({k: getattr(args, k) for k in keys}).encode()).hexdigest()[:10]


def train(row: str, queries: SyntheticSet, base: str, args, teacher: str | None = None) -> str:
    """The model of one trained row (cached): plain MNRL, or GPL with `teacher`."""
    out = args.work / row
    model = out / "model"
    if (model / "modules.json").is_file():
        return str(model)
    common = {
        "base": base, "max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr,
        "eval_steps": args.eval_steps, "logging_steps": 5, "max_seq_length": args.max_seq_length,
        "eval_max_docs": 300, "epochs": 100.0,
    }  # fmt: skip
    train_set = queries.to_retrieval_set(name=row)
    t0 = time.perf_counter()
    if teacher:
        from korag.training.gpl import GPLTrainConfig, train_gpl

        result = train_gpl(train_set, GPLTrainConfig(teacher=teacher, **common), out)
    else:
        from korag.training.config import DenseTrainConfig
        from korag.training.dense import train_dense

        result = train_dense(train_set, DenseTrainConfig(**common), out)
    console.print(f"{row}: trained in {time.perf_counter() - t0:.0f} s → {result.metrics}")
    return str(model)


def rankings(name: str, retriever, sets: dict[str, RetrievalSet], boards: list[str], cache: Path) -> dict:
    """`retriever`'s scores on each board (one index of the board's corpus), cached by row."""
    path = cache / f"scores-{name}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    out = {}
    corpus = sets[boards[0]].corpus
    t0 = time.perf_counter()
    retriever.index(corpus, show_progress=True)
    for b in boards:
        ranking = retriever.search(sets[b].queries, k=100, show_progress=True)
        out[b] = evaluate_ranking(ranking, sets[b].qrels, METRICS).metrics
    console.print(f"{name}: {time.perf_counter() - t0:.0f} s {out}")
    atomic.write_json(path, out)
    return out


def board_rows(board: str, sets: dict[str, RetrievalSet], args) -> tuple[dict, dict]:
    """Every row of one board (kobill, or KorQuAD with the paraphrase set beside it)."""
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.expansion_docs import ExpandedRetriever

    corpus = sets[board].corpus
    sample = corpus
    if board == "korquad" and args.korquad_passages < len(corpus):
        sample = corpus.subset(sorted(random.Random(0).sample(range(len(corpus)), args.korquad_passages)))
    synth = generated(board, corpus, corpus_file(board, sample), args.llm)
    llm, free = subset(synth, True), subset(synth, False)
    scored = [board, "paraphrase"] if board == "korquad" else [board]
    cache = args.work / board / settings_tag(args)
    args_b = argparse.Namespace(**{**vars(args), "work": cache})
    base = offline_e5(ROOT / "bench" / "work")
    expansions: dict[str, list[str]] = {}
    for q in llm.queries:
        expansions.setdefault(q.doc_id, []).append(q.text)
    rows = {
        "bm25": rankings("bm25", BM25Retriever(), sets, scored, cache),
        "bm25 + doc2query (LLM)": rankings(
            "bm25-doc2query", ExpandedRetriever(BM25Retriever(), expansions), sets, scored, cache
        ),
        "e5 zero-shot": rankings("e5", DenseRetriever(base), sets, scored, cache),
        "e5 MNRL, LLM queries": rankings(
            "mnrl-llm", DenseRetriever(train("mnrl-llm", llm, base, args_b)), sets, scored, cache
        ),
        "e5 MNRL, LLM-free queries": rankings(
            "mnrl-free", DenseRetriever(train("mnrl-free", free, base, args_b)), sets, scored, cache
        ),
    }
    if args.teacher:
        variants = [("gpl-llm", "e5 GPL, LLM queries", llm)]
        if args.gpl_free:
            variants.append(("gpl-free", "e5 GPL, LLM-free queries", free))
        teacher_tag = hashlib.sha1(str(Path(args.teacher).resolve()).encode()).hexdigest()[:8]
        for key, label, qs in variants:
            key = f"{key}-{teacher_tag}"
            model = train(key, qs, base, args_b, teacher=args.teacher)
            rows[label] = rankings(key, DenseRetriever(model), sets, scored, cache)
    counts = {
        "passages": len(corpus),
        "passages_generated_for": len(sample),
        "llm_queries": len(llm),
        "llm_free_queries": len(free),
        "passages_expanded": len(expansions),
    }
    return rows, counts


def plot(rows: dict[str, dict], png: Path) -> None:
    """MRR@10 of every row, one group of bars per board."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    boards = [b for b in TITLES if any(b in rows[n] for n in names)]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [j + i * width for j, b in enumerate(boards) if b in rows[n]]
        ax.bar(xs, [rows[n][b]["mrr@10"] for b in boards if b in rows[n]], width, label=n)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(boards))], [TITLES[b] for b in boards])
    ax.set_ylabel("MRR@10")
    ax.set_ylim(0.4, 1.0)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--boards", default="domain,korquad")
    ap.add_argument("--llm", default="gemma3-270m")
    ap.add_argument("--teacher", default=None, help="cross-encoder directory for GPL (bench/quality.py train-reranker)")
    ap.add_argument("--gpl-free", action="store_true", help="also GPL on the LLM-free queries")
    ap.add_argument("--korquad-passages", type=int, default=200, help="KorQuAD paragraphs to generate queries for")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--eval-steps", type=int, default=10)
    # 128 tokens truncate the passages while evaluation reads up to 512 (the first run, at 128 and
    # lr 2e-5, lost to zero-shot on every board)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "synthesis.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = scoreboards(args.data)
    rows: dict[str, dict] = {}
    counts = {}
    for board in args.boards.split(","):
        got, counts[board] = board_rows(board, sets, args)
        for name, by in got.items():
            rows.setdefault(name, {}).update(by)
    shown = [b for b in TITLES if any(b in by for by in rows.values())]
    table = Table(title="label-free adaptation and doc2query (bench/synthesis.py): MRR@10 / R@10")
    table.add_column("system")
    for b in shown:
        table.add_column(f"{TITLES[b]} MRR@10", justify="right")
        table.add_column(f"{TITLES[b]} R@10", justify="right")
    for name, by in rows.items():
        cells = []
        for b in shown:
            cells += [f"{by[b]['mrr@10']:.4f}", f"{by[b]['recall@10']:.4f}"] if b in by else ["", ""]
        table.add_row(name, *cells)
    console.print(table)
    console.print(f"queries kept: {counts}")
    payload = {
        "command": "python bench/synthesis.py " + " ".join(sys.argv[1:]),
        "questions": {b: len(sets[b].queries) for b in shown},
        "generated": counts,
        "rows": rows,
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    atomic.write_json(args.output, payload)
    plot(rows, args.output.with_suffix(".png"))
    console.print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
