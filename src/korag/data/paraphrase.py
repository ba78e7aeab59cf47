"""A Korean paraphrase retrieval set over the KorQuAD 1.0 dev paragraphs: questions that ask what
a paragraph says in other words, the second scoreboard next to KorQuAD's own questions.

KorQuAD's questions copy their paragraph's words (82% of a question's content morphemes occur in
its paragraph), which is why BM25 looks unbeatable on them. These 461 questions were written by
hand for korag (CC BY 4.0, see ``resources/korquad_paraphrase/README.md``) over the paragraphs of
the test half of `bench/dense_korquad.py`'s article split, in five styles: synonyms, English
terms for Korean ones and back, colloquial speech, a description instead of the name, and a
question about a consequence rather than a sentence. Their content-morpheme overlap with the
gold paragraph is about 0.4 (`lexical_overlap`).

The repository ships only the questions, each with its paragraph's id and the SHA-1 of the
paragraph's text; the paragraphs are read from the KorQuAD file the user has, and a file whose
paragraphs differ is refused. Near-duplicate paragraphs of the dev set (the same passage in two
articles) count as relevant too (`TWINS`).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from korag.data.schema import Qrels, Queries, RetrievalSet
from korag.errors import DataError

RESOURCE = "korquad_paraphrase/questions.jsonl"
# Paragraphs of KorQuAD 1.0 dev that repeat each other (most of one inside the other): a question
# about one is answered by its twin as well.
TWINS: tuple[tuple[str, ...], ...] = (
    ("54-20", "54-42"),
    ("54-21", "54-44"),
    ("54-33", "54-48"),
    ("64-8", "64-10"),
    ("68-3", "68-4", "68-5"),
    ("125-36", "125-46", "72-19"),
    ("125-35", "125-45", "72-18"),
    ("125-33", "125-37"),
    ("25-0", "54-36"),
)


def paraphrase_rows() -> list[dict]:
    """The shipped questions (id, doc_id, question, answer, style, context_sha1)."""
    text = resources.files("korag.resources").joinpath(RESOURCE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_paraphrase(korquad_dev: str | Path) -> RetrievalSet:
    """The paraphrase set as a retrieval task over every KorQuAD 1.0 dev paragraph (read from
    `korquad_dev`), each question judged relevant to its paragraph and that paragraph's twins."""
    from korag.data.korquad import read_korquad

    qa = read_korquad(korquad_dev)
    corpus = qa.corpus
    twins = {d: group for group in TWINS for d in group}
    ids, texts, judged = [], [], {}
    for row in paraphrase_rows():
        doc = row["doc_id"]
        if doc not in corpus:
            raise DataError(korquad_dev, f"has no paragraph {doc!r}: not the KorQuAD 1.0 dev set", record=row["id"])
        if hashlib.sha1(corpus.get(doc).text.encode("utf-8")).hexdigest()[:12] != row["context_sha1"]:
            raise DataError(
                korquad_dev, f"paragraph {doc!r} differs from the one the question was written for", record=row["id"]
            )
        ids.append(row["id"])
        texts.append(row["question"])
        judged[row["id"]] = dict.fromkeys(twins.get(doc, (doc,)), 1) | {doc: 1}
    return RetrievalSet(corpus, Queries(ids, texts), Qrels(judged), name="korquad-paraphrase")


def content_morphemes(text: str) -> set[str]:
    """Kiwi's content morphemes of `text` (nouns, verb and adjective stems, roots, numbers, foreign words)."""
    from korag.text.morph import shared_kiwi

    keep = ("NNG", "NNP", "VV", "VA", "XR", "SL", "SH", "SN", "MAG")
    return {t.form.lower() for t in shared_kiwi().tokenize(text) if t.tag.startswith(keep)}


def lexical_overlap(question: str, paragraph: str) -> float:
    """Share of the question's content morphemes that occur in the paragraph's."""
    q = content_morphemes(question)
    return len(q & content_morphemes(paragraph)) / len(q) if q else 0.0
