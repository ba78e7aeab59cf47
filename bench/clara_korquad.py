"""CLaRa stage 1 → 2 with a real small LM (Gemma 3 270M, offline) on KorQuAD 1.0 paragraphs.

    python bench/clara_korquad.py [--train-paragraphs 150] [--steps1 100] [--steps2 100] [--eval 80] [--k 3]

Stage 1 compresses paragraphs of the first half of the articles and learns to regenerate their
QA lines; stage 2 answers those paragraphs' questions from the top-k BM25 paragraphs (oracle:
the gold paragraph is always among them). Evaluated on questions of the *other* half: CLaRa from
BM25's top-k (normal) and with the gold paragraph included (oracle), against the same LM
without adapters closed-book and with the same paragraphs as text. CPU-sized: a few hundred
steps on 2 cores are far from the paper's training, so the numbers show the machinery and the
trade-offs, not CLaRa's quality. Prints a table, writes JSON and a bar chart to bench/results/.

The PDF scenario: one test-half article is typeset as a PDF, read back with korag's PDF reader,
cut into passages, retrieved with BM25 and compressed; its KorQuAD questions are the questions
about the PDF, scored against their reference answers.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from korag import atomic
from korag.data.korquad import read_korquad
from korag.data.schema import QASet
from korag.data.training import split_by_group
from korag.eval.report import RunSummary, plot_metrics
from korag.memory.clara.config import ClaraConfig, ClaraTrainConfig
from korag.memory.clara.data import retrieval_examples, stage1_from_qa
from korag.memory.clara.inference import ClaraReader, evaluate_clara
from korag.memory.clara.store import load_clara
from korag.memory.clara.train import train_clara
from korag.retrieval.bm25 import BM25Retriever

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"
console = Console(width=200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--base", default="gemma3-270m")
    ap.add_argument("--train-paragraphs", type=int, default=150)
    ap.add_argument("--steps1", type=int, default=100)
    ap.add_argument("--steps2", type=int, default=100)
    ap.add_argument("--eval", type=int, default=80, help="test questions")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--doc-max-length", type=int, default=256)
    ap.add_argument("--rate", type=int, default=32)
    ap.add_argument("--pdf-questions", type=int, default=20, help="questions about the PDF (0: skip)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "clara")
    ap.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "clara_korquad.json")
    args = ap.parse_args()

    qa = read_korquad(args.data)
    group_of = {d.id: str(d.meta["article"]) for d in qa.corpus}
    first, second, _ = split_by_group(qa, group_of, 0.5, seed=0)
    rng = random.Random(0)
    paragraphs = sorted({e.doc_ids[0] for e in first.examples})
    keep = set(rng.sample(paragraphs, min(args.train_paragraphs, len(paragraphs))))
    train_qa = QASet(qa.corpus, [e for e in first.examples if e.doc_ids[0] in keep], name="train")
    test_qa = QASet(qa.corpus, rng.sample(second.examples, min(args.eval, len(second.examples))), name="test")
    bm25 = BM25Retriever("bigram-stem")
    bm25.index(qa.corpus)
    s1 = stage1_from_qa(train_qa)
    s2 = retrieval_examples(train_qa, bm25, k=args.k, oracle=True)
    test_normal = retrieval_examples(test_qa, bm25, k=args.k)
    test_oracle = retrieval_examples(test_qa, bm25, k=args.k, oracle=True)
    console.print(
        f"stage 1: {len(s1)} paragraphs; stage 2: {len(s2)} questions; test: {len(test_qa.examples)} questions, "
        f"BM25 top-{args.k} holds the gold paragraph for {sum(bool(e.positives) for e in test_normal)}"
    )
    clara = ClaraConfig(doc_max_length=args.doc_max_length, compression_rate=args.rate, top_k=args.k)
    runs = {}
    t0 = time.perf_counter()
    r1 = train_clara(
        s1,
        ClaraTrainConfig(base=args.base, stage=1, clara=clara, max_steps=args.steps1, batch_size=2, save_steps=50),
        args.work / "stage1",
    )
    r2 = train_clara(
        s2,
        ClaraTrainConfig(
            base=args.base,
            stage=2,
            init_from=str(args.work / "stage1" / "model"),
            clara=clara,
            max_steps=args.steps2,
            batch_size=2,
            save_steps=50,
        ),
        args.work / "stage2",
    )
    model, _ = load_clara(args.work / "stage2" / "model")
    reader = ClaraReader(model, identity="bench", batch_size=4)
    rows = evaluate_clara(reader, test_normal, k=args.k, show_progress=True)
    runs.update({f"{name} · BM25 top-{args.k}": row for name, row in rows.items()})
    oracle = evaluate_clara(reader, test_oracle, k=args.k, baselines=("full-text",), show_progress=True)
    runs.update({f"{name} · oracle": row for name, row in oracle.items() if "picks" not in name})
    pdf_info = {}
    if args.pdf_questions:
        pdf_info = pdf_scenario(qa, second, reader, args)
        runs.update({f"{name} · PDF": row for name, row in pdf_info.pop("rows").items() if "picks" not in name})
    seconds = time.perf_counter() - t0

    cols = ["em_korquad", "f1_korquad", "cover_em_korquad", "em_squad", "f1_squad"]
    table = Table(
        title=f"CLaRa ({args.base}, rate {args.rate}, k={args.k}) on KorQuAD 1.0 dev, {len(test_qa.examples)} questions"
    )
    table.add_column("run")
    for c in [*cols, "generate s"]:
        table.add_column(c, justify="right")
    for name, r in runs.items():
        table.add_row(name, *(f"{r[c]:.1f}" for c in cols), f"{r['generate_seconds']:.1f}")
    console.print(table)
    first_row = next(iter(runs.values()))
    console.print(
        f"compression ×{first_row['compression_nominal']} nominal, ×{first_row['compression_measured']:.1f} measured; "
        f"prompt tokens {first_row['prompt_tokens_clara']:.0f} vs {first_row['prompt_tokens_full_text']:.0f} "
        f"({100 * first_row['prompt_tokens_saved']:.0f}% saved); stage 1 loss {r1['first_loss']:.2f} → "
        f"{r1['last_loss']:.2f} ({r1['seconds']:.0f} s), stage 2 loss {r2['first_loss']:.2f} → {r2['last_loss']:.2f} "
        f"({r2['seconds']:.0f} s)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plot_metrics(
        [RunSummary(n, {}, {c: r[c] for c in ("em_korquad", "f1_korquad")}) for n, r in runs.items()],
        ["em_korquad", "f1_korquad"],
        args.output.with_suffix(".png"),
        title="CLaRa vs baselines (KorQuAD)",
    )
    atomic.write_json(
        args.output,
        {
            "base": args.base,
            "settings": vars(args) | {"data": str(args.data), "work": str(args.work), "output": str(args.output)},
            "training": {
                "stage1": {k: v for k, v in r1.items() if k != "history"},
                "stage2": {k: v for k, v in r2.items() if k != "history"},
            },
            "pdf": pdf_info,
            "runs": runs,
            "seconds": seconds,
            "machine": {"python": platform.python_version()},
        },
    )
    console.print(f"wrote {args.output}")


def write_pdf(title: str, paragraphs: list[str], path: Path) -> Path:
    """Typeset paragraphs as a PDF with a Korean CID font (reportlab wraps CJK text)."""
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    pdfmetrics.registerFont(UnicodeCIDFont("HYSMyeongJo-Medium"))
    style = ParagraphStyle("body", fontName="HYSMyeongJo-Medium", fontSize=10, leading=15, wordWrap="CJK")
    path.parent.mkdir(parents=True, exist_ok=True)
    story = []
    for text in paragraphs:
        story += [Paragraph(escape(text), style), Spacer(1, 8)]
    SimpleDocTemplate(str(path), pagesize=A4, title=title).build(story)
    return path


def pdf_scenario(qa: QASet, second: QASet, reader: ClaraReader, args) -> dict:
    """Questions about one test-half article, asked of the article typeset as a PDF."""
    from korag.memory.clara.corpus_qa import answer_recall, questions_over

    by_article: dict[str, list] = {}
    for e in second.examples:
        by_article.setdefault(str(qa.corpus.get(e.doc_ids[0]).meta["article"]), []).append(e)
    paragraphs_of: dict[str, list[str]] = {}
    for d in qa.corpus:
        paragraphs_of.setdefault(str(d.meta["article"]), []).append(d.text)
    # the shortest article that still asks enough questions over several pages of text
    article = min(
        (a for a, es in by_article.items() if len(es) >= args.pdf_questions and len(paragraphs_of[a]) >= 5),
        key=lambda a: (len(paragraphs_of[a]), a),
    )
    paragraphs = paragraphs_of[article]
    pdf = write_pdf(article.replace("_", " "), paragraphs, args.work / "pdf" / f"{article}.pdf")
    asked = by_article[article][: args.pdf_questions]
    passages, examples = questions_over(str(pdf), asked, k=args.k)
    rows = evaluate_clara(reader, examples, k=args.k, show_progress=True)
    info = {
        "article": article,
        "pdf": str(pdf),
        "pages": len({p for d in passages for p in d.meta.get("pages", ())}) or None,
        "passages": len(passages),
        "questions": len(examples),
        f"answer_recall@{args.k}": answer_recall(examples, args.k),
        "rows": rows,
    }
    console.print(
        f"PDF scenario: '{article}' → {pdf.name}, {len(paragraphs)} paragraphs → {len(passages)} passages; "
        f"BM25 top-{args.k} holds a reference answer for {100 * info[f'answer_recall@{args.k}']:.0f}% "
        f"of {len(examples)} questions"
    )
    return info


if __name__ == "__main__":
    main()
