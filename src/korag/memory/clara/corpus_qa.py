"""Questions about a user's own documents (a PDF, a folder): retrieve passages, then hand them
to CLaRa as compressed memory.

A PDF comes with no gold passages, only reference answers, so a passage counts as relevant when
it contains a reference answer (`korag.eval.qa.contains_answer`: NFC and whitespace only). That
gives the retriever's answer recall beside the EM/F1 of the answers, and `pos_index` for the
query reasoner's own choice.
"""

from __future__ import annotations

from collections.abc import Sequence

from korag.data.schema import Corpus, QAExample, Queries
from korag.errors import ConfigError
from korag.eval.qa import contains_answer
from korag.memory.clara.data import ClaraExample


def corpus_examples(
    questions: Sequence[QAExample], corpus: Corpus, retriever, *, k: int = 5, with_title: bool = True
) -> list[ClaraExample]:
    """Each question with the top-k passages of `corpus` from `retriever` (already indexed on
    it); `positives` are the passages that contain a reference answer."""
    if k < 1:
        raise ConfigError(f"k must be at least 1 (got {k})")
    if len(corpus) < k:
        raise ConfigError(f"k={k} but the corpus has only {len(corpus)} passage(s)")
    ranking = retriever.search(Queries([q.id for q in questions], [q.question for q in questions]), k=k)
    hits = dict(ranking.items())
    contents = dict(zip(corpus.ids, corpus.contents(with_title), strict=True))
    out = []
    for q in questions:
        docs = tuple(contents[d] for d, _ in hits[q.id][:k])
        pos = tuple(i for i, d in enumerate(docs) if contains_answer(d, q.answers))
        out.append(ClaraExample((q.question,), tuple(q.answers), docs, "qa", pos))
    return out


def answer_recall(examples: Sequence[ClaraExample], at: int) -> float:
    """Share of questions whose first `at` passages hold a reference answer."""
    return sum(any(i < at for i in e.positives) for e in examples) / max(1, len(examples))


def questions_over(
    path: str,
    questions: Sequence[QAExample],
    *,
    k: int = 5,
    max_tokens: int = 80,
    overlap_tokens: int | None = None,
    tokenizer: str = "bigram-stem",
    show_progress: bool = False,
) -> tuple[Corpus, list[ClaraExample]]:
    """Load a corpus (PDF, text, HTML, folder or JSONL), cut it into passages of `max_tokens`
    words (a fifth of them overlapping by default), index them with BM25 and pair each question
    with its top-k passages."""
    from korag.data.chunk import ChunkConfig
    from korag.data.load import corpus_of, load
    from korag.retrieval.bm25 import BM25Retriever

    overlap = max_tokens // 5 if overlap_tokens is None else overlap_tokens
    chunk = ChunkConfig(max_tokens=max_tokens, overlap_tokens=overlap)
    corpus = corpus_of(load(path, chunk=chunk, show_progress=show_progress))
    bm25 = BM25Retriever(tokenizer)
    bm25.index(corpus, show_progress=show_progress)
    return corpus, corpus_examples(questions, corpus, bm25, k=k)
