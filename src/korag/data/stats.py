"""Corpus and QA-set statistics: counts, length distributions, questions per passage, vocabulary."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from korag.data.schema import Corpus, QASet, RetrievalSet
from korag.text.tokenize import Tokenizer, make_tokenizer

STATS_TOKENIZER = "mecab"
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Distribution:
    """Summary of a list of numbers."""

    count: int
    mean: float
    min: float
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, values) -> Distribution:
        """Summarise `values` (all zeros for an empty list)."""
        a = np.asarray(list(values), dtype=np.float64)
        if a.size == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        return cls(
            int(a.size),
            float(a.mean()),
            float(a.min()),
            float(np.median(a)),
            float(np.percentile(a, 90)),
            float(a.max()),
        )


@dataclass
class DatasetStats:
    """What `korag data stats` reports."""

    name: str
    kind: str  # "qa", "retrieval" or "corpus"
    tokenizer: str
    documents: int
    titled_documents: int
    document_chars: Distribution
    document_tokens: Distribution
    vocabulary: int
    corpus_tokens: int
    hangul_char_ratio: float
    mixed_script_documents: int
    queries: int = 0
    query_chars: Distribution | None = None
    query_tokens: Distribution | None = None
    judgements: int = 0
    relevant_per_query: Distribution | None = None
    questions_per_document: Distribution | None = None
    documents_without_questions: int = 0
    answers: int = 0
    answer_chars: Distribution | None = None
    answer_tokens: Distribution | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def compute_stats(
    data: RetrievalSet | QASet | Corpus,
    tokenizer: Tokenizer | str | None = STATS_TOKENIZER,
    *,
    show_progress: bool = False,
) -> DatasetStats:
    """Statistics of any loaded dataset; token counts and vocabulary use `tokenizer`."""
    tok = make_tokenizer(tokenizer)
    corpus = data if isinstance(data, Corpus) else data.corpus
    contents = corpus.contents(with_title=False)
    doc_tokens = tok.tokenize_batch(contents, show_progress=show_progress)
    vocab: Counter[str] = Counter()
    for toks in doc_tokens:
        vocab.update(toks)
    total_chars = sum(len(t) for t in contents)
    hangul = sum(len(_HANGUL.findall(t)) for t in contents)
    mixed = sum(1 for t in contents if _HANGUL.search(t) and _LATIN.search(t))
    stats = DatasetStats(
        name=corpus.name,
        kind="corpus",
        tokenizer=str(tok.config().get("name")),
        documents=len(corpus),
        titled_documents=sum(1 for t in corpus.titles if t),
        document_chars=Distribution.of(len(t) for t in contents),
        document_tokens=Distribution.of(len(t) for t in doc_tokens),
        vocabulary=len(vocab),
        corpus_tokens=int(sum(vocab.values())),
        hangul_char_ratio=hangul / total_chars if total_chars else 0.0,
        mixed_script_documents=mixed,
    )
    rs = data.to_retrieval_set() if isinstance(data, QASet) else data if isinstance(data, RetrievalSet) else None
    if rs is not None:
        stats.kind = "retrieval"
        q_tokens = tok.tokenize_batch(rs.queries.texts)
        stats.queries = len(rs.queries)
        stats.query_chars = Distribution.of(len(t) for t in rs.queries.texts)
        stats.query_tokens = Distribution.of(len(t) for t in q_tokens)
        stats.judgements = rs.qrels.num_pairs()
        stats.relevant_per_query = Distribution.of(len(rs.qrels.relevant(q)) for q in rs.qrels)
        per_doc: Counter[str] = Counter()
        for q in rs.qrels:
            per_doc.update(rs.qrels.relevant(q))
        stats.questions_per_document = Distribution.of(per_doc.get(d, 0) for d in corpus.ids)
        stats.documents_without_questions = sum(1 for d in corpus.ids if d not in per_doc)
    if isinstance(data, QASet):
        stats.kind = "qa"
        answers = [a for ex in data.examples for a in ex.answers]
        stats.answers = len(answers)
        stats.answer_chars = Distribution.of(len(a) for a in answers)
        stats.answer_tokens = Distribution.of(len(t) for t in tok.tokenize_batch(answers))
        stats.extra["unanswerable_questions"] = sum(1 for ex in data.examples if not ex.answers)
    return stats


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _count_rows(stats: DatasetStats) -> list[tuple[str, str]]:
    rows = [
        ("documents", f"{stats.documents:,}"),
        ("documents with a title", f"{stats.titled_documents:,}"),
        (f"corpus tokens ({stats.tokenizer})", f"{stats.corpus_tokens:,}"),
        (f"vocabulary ({stats.tokenizer})", f"{stats.vocabulary:,}"),
        ("Hangul share of characters", f"{stats.hangul_char_ratio:.1%}"),
        ("documents mixing Hangul and Latin", f"{stats.mixed_script_documents:,}"),
    ]
    if stats.kind != "corpus":
        rows += [
            ("queries", f"{stats.queries:,}"),
            ("judgements (query, document)", f"{stats.judgements:,}"),
            ("documents without questions", f"{stats.documents_without_questions:,}"),
        ]
    if stats.kind == "qa":
        rows.append(("answers", f"{stats.answers:,}"))
    if "pdf_pages" in stats.extra:
        rows.append(("PDF pages", f"{stats.extra['pdf_pages']:,}"))
        rows.append(("PDF pages with little or no text", f"{stats.extra['pdf_pages_without_text']:,}"))
    if stats.extra.get("skipped_files"):
        rows.append(("files that could not be read", f"{stats.extra['skipped_files']:,}"))
    return rows


def add_load_report(stats: DatasetStats, report) -> None:
    """Record what loading skipped and which PDF pages had no text (a `LoadReport`)."""
    if report.pages:
        stats.extra["pdf_pages"] = sum(report.pages.values())
        stats.extra["pdf_pages_without_text"] = sum(len(p) for p in report.thin_pages.values())
    if report.skipped:
        stats.extra["skipped_files"] = len(report.skipped)


def _distribution_rows(stats: DatasetStats) -> list[list[str]]:
    named = [
        ("document characters", stats.document_chars),
        (f"document tokens ({stats.tokenizer})", stats.document_tokens),
        ("query characters", stats.query_chars),
        (f"query tokens ({stats.tokenizer})", stats.query_tokens),
        ("relevant documents per query", stats.relevant_per_query),
        ("questions per document", stats.questions_per_document),
        ("answer characters", stats.answer_chars),
        (f"answer tokens ({stats.tokenizer})", stats.answer_tokens),
    ]
    return [
        [label, *(_fmt(v) for v in (d.mean, d.min, d.median, d.p90, d.max))]
        for label, d in named
        if d is not None and d.count
    ]


_DIST_COLUMNS = ("", "mean", "min", "median", "p90", "max")


def render_stats(stats: DatasetStats):
    """Two rich tables: counts, and length distributions."""
    from rich.table import Table

    counts = Table(title=f"{stats.name} ({stats.kind})", show_header=True)
    counts.add_column("what")
    counts.add_column("value", justify="right")
    for what, value in _count_rows(stats):
        counts.add_row(what, value)
    dists = Table(title="distributions", show_header=True)
    for col in _DIST_COLUMNS:
        dists.add_column(col, justify="right" if col else "left")
    for row in _distribution_rows(stats):
        dists.add_row(*row)
    return counts, dists


def stats_markdown(stats: DatasetStats) -> str:
    """The same two tables in Markdown."""
    lines = [f"**{stats.name}** ({stats.kind})", "", "| what | value |", "|---|---:|"]
    lines += [f"| {w} | {v} |" for w, v in _count_rows(stats)]
    lines += ["", "| " + " | ".join(_DIST_COLUMNS) + " |", "|---|" + "---:|" * (len(_DIST_COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in _distribution_rows(stats)]
    return "\n".join(lines) + "\n"
