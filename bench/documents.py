"""Korean PDFs in, cited answers out — measured on the three PDFs of `bench/documents/`
(a two-column journal paper, a report with a scanned appendix page, a slide handout with an
image-only slide; typeset by its `typeset.py`) and their 100 questions.

    python bench/documents.py                 # everything (ask with Gemma 3 270M: ~10 minutes)
    python bench/documents.py --ask-limit 0   # ingestion and retrieval only

Before/after compare the ingestion korag had (pypdf's lines as they come, the metadata title, a
line break ends a sentence: ``read_pdf(layout="raw")`` + ``splitter="kiwi-lines"``) with the
current one (``read_pdf()`` + the default `ChunkConfig`, what `korag add` and `korag index`
use). Both cut passages to the same budget (200 words, 40 overlapping).

Figures:
- mid-word edges: the share of passages that start or end inside a word. Each passage's first
  and last 12 characters (whitespace removed) are located in the source text of its document
  (`bench/documents/content/*.json`); an edge is mid-word when the source has letters on both
  sides of it with no space between.
- answers intact: the share of answers found (strict: NFC, whitespace collapsed) in some
  passage of their document — a ceiling for any retriever.
- answer recall@1/@5 and MRR@10 of BM25, dense (multilingual-e5-small) and their RRF hybrid,
  a passage counting when it contains a reference answer (`korag.eval.qa.contains_answer`).
- `ask` EM/F1 (KorQuAD rules) with the offline reader (Gemma 3 270M) on the hybrid's top 3
  (`--ask-k`), next to the same reader closed-book.
- ingestion pages/s; `korag add` / `remove` latency on a collection with BM25 + dense.

Results: tables, and `bench/results/documents.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "bench" / "documents"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(HERE))

import typeset  # noqa: E402
import verify  # noqa: E402

from korag.data.chunk import ChunkConfig, chunk_document  # noqa: E402
from korag.data.schema import Corpus, QAExample  # noqa: E402
from korag.eval.qa import contains_answer  # noqa: E402

EDGE = 12
BUDGETS = (200, 80)  # words per passage: korag's default, and a finer cut where retrieval is harder


def squash(text: str) -> str:
    return "".join(text.split())


class Source:
    """A document's source text without whitespace, and where its words begin and end."""

    def __init__(self, text: str) -> None:
        chars, bounds = [], {0}
        for ch in text:
            if ch.isspace():
                bounds.add(len(chars))
            else:
                chars.append(ch)
        self.s = "".join(chars)
        self.bounds = bounds | {len(self.s)}

    def mid_word(self, at: int) -> bool:
        """Whether position `at` (between s[at-1] and s[at]) splits a word."""
        if at in self.bounds or at <= 0 or at >= len(self.s):
            return False
        return self.s[at - 1].isalnum() and self.s[at].isalnum()


def edge_report(corpus: Corpus, sources: dict[str, Source]) -> dict[str, float]:
    """Share of passages starting or ending mid-word (and how many edges could be located)."""
    mid = measured = 0
    for doc in corpus:
        file = doc.meta.get("file") or doc.meta.get("source_id") or doc.id.split("#")[0]
        src, text = sources[file], squash(doc.text)
        if len(text) < EDGE:
            continue
        start, end = src.s.find(text[:EDGE]), src.s.find(text[-EDGE:])
        flags = []
        if start >= 0:
            flags.append(src.mid_word(start))
        if end >= 0:
            flags.append(src.mid_word(end + EDGE))
        if flags:
            measured += 1
            mid += any(flags)
    return {"mid_word_share": mid / max(1, measured), "passages": len(corpus), "measured": measured}


def read(pdfs: list[Path], variant: str, budget: int) -> tuple[Corpus, float, int]:
    """The passages (of `budget` words, a fifth overlapping) of all PDFs as ingested `before` or
    `after`, the seconds it took and the pages."""
    from korag.data.folder import load_file
    from korag.data.pdf import read_pdf

    t0 = time.perf_counter()
    passages, pages = [], 0
    for pdf in pdfs:
        if variant == "before":
            doc = read_pdf(pdf, layout="raw")
            config = ChunkConfig(max_tokens=budget, overlap_tokens=budget // 5, splitter="kiwi-lines")
            passages.extend(chunk_document(doc, config))
            pages += doc.meta["pages"]
        else:
            pieces = load_file(pdf, pdf.name, ChunkConfig(max_tokens=budget, overlap_tokens=budget // 5))
            passages.extend(pieces)
            pages += max(p for d in pieces for p in d.meta.get("pages", [0]))
    return Corpus.from_documents(passages, name=variant), time.perf_counter() - t0, pages


def recall(retriever, corpus: Corpus, questions: list[QAExample]) -> dict[str, float]:
    """Answer recall@1/@5 and MRR@10 of an indexed retriever."""
    ranking = retriever.search([q.question for q in questions], k=10)
    r1 = r5 = mrr = 0.0
    for i, q in enumerate(questions):
        first = next(
            (
                rank
                for rank, (pid, _) in enumerate(ranking.row(i), 1)
                if contains_answer(corpus.get(pid).text, q.answers)
            ),
            None,
        )
        r1 += first == 1
        r5 += first is not None and first <= 5
        mrr += 1 / first if first else 0.0
    n = len(questions)
    return {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n}


def retrieval(corpus: Corpus, questions: list[QAExample], model_dir: str) -> dict[str, dict[str, float]]:
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.fusion import HybridRetriever

    bm25, dense = BM25Retriever(), DenseRetriever(model_dir)
    bm25.index(corpus)
    dense.index(corpus)
    hybrid = HybridRetriever([bm25, dense])
    return {name: recall(r, corpus, questions) for name, r in (("bm25", bm25), ("dense", dense), ("hybrid", hybrid))}


def latency(pdfs: list[Path], tmp: Path) -> dict[str, float]:
    """Seconds of `add` (three PDFs, BM25 + dense), an unchanged re-add, a changed file, a remove."""
    from korag.collections import Collection, CollectionConfig, DenseSettings

    folder = tmp / "in"
    folder.mkdir(parents=True)
    for p in pdfs:
        shutil.copy(p, folder / p.name)
    c = Collection.create(tmp / "c", CollectionConfig(name="bench", dense=DenseSettings(model="e5-small")))
    out = {}
    t0 = time.perf_counter()
    c.warm_up()
    out["load_models_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    c.add([folder])
    out["add_3_pdfs_seconds"] = time.perf_counter() - t0
    out["pages_per_second_add"] = sum(d.pages or 0 for d in c.documents()) / out["add_3_pdfs_seconds"]
    t0 = time.perf_counter()
    c.add([folder])
    out["readd_unchanged_seconds"] = time.perf_counter() - t0
    changed = folder / pdfs[-1].name
    changed.write_bytes(changed.read_bytes() + b"\n% a revision\n")
    t0 = time.perf_counter()
    r = c.add([changed])
    out["replace_one_seconds"] = time.perf_counter() - t0
    assert r.replaced == [changed.name], r.summary()
    t0 = time.perf_counter()
    c.remove([pdfs[0].name])
    out["remove_one_seconds"] = time.perf_counter() - t0
    return out


def ask(pdfs: list[Path], questions: list[QAExample], tmp: Path, limit: int, k: int) -> list:
    from korag.collections import Collection, CollectionConfig, DenseSettings
    from korag.collections.evaluate import evaluate_ask

    c = Collection.create(tmp / "ask", CollectionConfig(name="ask", dense=DenseSettings(model="e5-small")))
    c.add(pdfs)
    reader = c.reader("gemma3-270m")
    return evaluate_ask(c, questions[:limit], reader, k=k, show_progress=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ask-limit", type=int, default=100, help="questions for the ask/closed-book rows (0: skip)")
    ap.add_argument("--ask-k", type=int, default=3, help="passages the reader reads (korag ask's default)")
    args = ap.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from rich.console import Console
    from rich.table import Table

    from korag.models.offline import offline_model_dir

    console = Console()
    rows = [json.loads(line) for line in (HERE / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line]
    questions = [QAExample(r["id"], r["question"], tuple(r["answers"])) for r in rows]
    specs = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in typeset.content_files()}
    sources = {spec["file"]: Source(verify.content_text(spec)) for spec in specs.values()}
    model_dir = str(offline_model_dir("e5-small"))
    result: dict = {"questions": len(questions), "documents": len(sources)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pdfs = typeset.typeset_all(tmp / "pdfs")
        read(pdfs[:1], "before", BUDGETS[0])  # load Kiwi's model once, outside the timings
        for budget in BUDGETS:
            for variant in ("before", "after"):
                corpus, seconds, pages = read(pdfs, variant, budget)
                by_file: dict[str, list[str]] = {}
                for d in corpus:
                    by_file.setdefault(d.meta.get("file") or d.meta.get("source_id"), []).append(d.text)
                intact = sum(
                    any(contains_answer(t, q.answers) for t in by_file.get(r["file"], []))
                    for q, r in zip(questions, rows, strict=True)
                )
                lost = [
                    q.id
                    for q, r in zip(questions, rows, strict=True)
                    if not any(contains_answer(t, q.answers) for t in by_file.get(r["file"], []))
                ]
                result[f"{variant}-{budget}"] = {
                    **edge_report(corpus, sources),
                    "answers_intact": intact / len(questions),
                    "answers_lost": lost,
                    "pages": pages,
                    "pages_per_second": pages / seconds,
                    "retrieval": retrieval(corpus, questions, model_dir),
                }
                console.print(f"{variant}, {budget} words: {len(corpus)} passages, {pages} pages in {seconds:.2f} s")
        result["latency"] = latency(pdfs, tmp / "latency")
        if args.ask_limit:
            ask_rows = ask(pdfs, questions, tmp, args.ask_limit, args.ask_k)
            result["ask"] = {r.label: {k: v for k, v in r.metrics.items() if k != "predictions"} for r in ask_rows}
            result["ask_predictions"] = {r.label: r.metrics["predictions"] for r in ask_rows}

    t = Table(title=f"Korean PDF ingestion and retrieval ({len(questions)} questions, 3 PDFs)")
    cols = [f"{v}-{b}" for b in BUDGETS for v in ("before", "after")]
    t.add_column("")
    for c in cols:
        variant, budget = c.split("-")
        t.add_column(f"{variant}\n{budget} words", justify="right")
    t.add_row("passages", *(str(result[c]["passages"]) for c in cols))
    t.add_row("passages starting/ending mid-word", *(f"{result[c]['mid_word_share']:.1%}" for c in cols))
    t.add_row("answers intact in some passage", *(f"{result[c]['answers_intact']:.1%}" for c in cols))
    for name in ("bm25", "dense", "hybrid"):
        for metric in ("recall@1", "recall@5", "mrr@10"):
            t.add_row(f"{name} {metric}", *(f"{result[c]['retrieval'][name][metric]:.3f}" for c in cols))
    t.add_row("ingestion pages/s (1 process)", *(f"{result[c]['pages_per_second']:.1f}" for c in cols))
    console.print(t)
    lt = Table(title="collection latency (BM25 + dense e5-small, seconds)")
    lt.add_column("operation")
    lt.add_column("value", justify="right")
    for k, v in result["latency"].items():
        lt.add_row(k, f"{v:.2f}")
    console.print(lt)
    if "ask" in result:
        at = Table(title=f"korag ask, Gemma 3 270M reader ({min(args.ask_limit, len(questions))} questions)")
        for col in ("system", "EM", "F1", "answer in sources", "cites", "s/question"):
            at.add_column(col, justify="right" if col != "system" else "left")
        for label, m in result["ask"].items():
            at.add_row(
                label,
                f"{m['em_korquad']:.1f}",
                f"{m['f1_korquad']:.1f}",
                f"{m[f'answer_recall@{args.ask_k}']:.1%}" if f"answer_recall@{args.ask_k}" in m else "",
                f"{m['cited_share']:.1%}" if "cited_share" in m else "",
                f"{m['seconds_per_question']:.2f}",
            )
        console.print(at)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "documents.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {RESULTS / 'documents.json'}")


if __name__ == "__main__":
    main()
