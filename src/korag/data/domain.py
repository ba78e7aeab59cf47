"""A Korean retrieval set outside Wikipedia's domain: questions over the National Assembly bills
that konlpy ships (``konlpy/data/corpus/kobill``), to measure how retrievers pre-trained on
Wikipedia-like text (E5, KorQuAD-tuned models) carry over to legislative and budget prose.

The corpus is the ten bills of the 18th National Assembly (bill numbers 1809890–1809899, November
2010: amendments on parental leave, nursing degrees, subcontracting, administrative procedure,
international marriage brokers, and two troop-dispatch consents) as konlpy's PyPI package holds
them: text extracted from the bills' PDFs, lines hard-wrapped and pages cut by form feeds. The
texts are read at run time from the user's installed konlpy; korag ships only its own questions
(CC BY 4.0, ``resources/domain_kobill``), each with its passage's id and the SHA-1 of the passage
text, and refuses a corpus whose passages differ.

Passages are cut by a fixed rule of this module, not by `korag.data.chunk`: the shipped hashes
pin the exact passage texts, so the cutting must not move when the general chunker is tuned.
The rule: unwrap the PDF lines into paragraphs, split each bill into its sections (the proposal,
the bill text, the old/new comparison table, the cost and funding statements), drop the
comparison tables (two columns interleaved line by line, and a restatement of the bill text)
and the sections that are near-copies of an earlier bill's (the joint cost statement of the four
parental-leave bills, and bill 1809891's proposal, 1809890's but for the article number), then
pack paragraphs into passages of at most `MAX_CHARS` characters.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path

from korag.data.schema import Corpus, Document, Qrels, Queries, RetrievalSet
from korag.errors import DataError

RESOURCE = "domain_kobill/questions.jsonl"
BILLS = tuple(f"18098{n}.txt" for n in range(90, 100))
MAX_CHARS = 300
# A line that is only a page number ("- 3 -") or a ruler of dashes (the comparison table's
# "unchanged" marks) carries no text.
_NOISE = re.compile(r"^\s*(-\s*\d+\s*-|[-.\s]*)\s*$")
# A line that starts a list item, a numbered clause or an annotated item begins a paragraph.
_ITEM = re.compile(r"^\s*(\d+(의\d+)?\s*\.|[가-하]\.|[①-⑳○◦•∙□*]|<|〈|\()")
# A paragraph that opens one of these sections (after spaces are squeezed out).
_SECTIONS = (
    ("table", re.compile(r"^신[·ㆍ]?구조문대비표$")),
    ("bill", re.compile(r"^법률제호$")),
    ("cost", re.compile(r"(비용추계서|재원조달계획서|미첨부사유서)$")),
    ("contact", re.compile(r"^〈의안소관부서명〉$")),
)
_SENTENCE_END = re.compile(r"(?<=[.다함임음])\s+")


def kobill_dir() -> Path:
    """The kobill folder of the installed konlpy package (found without importing konlpy: its
    package imports JPype, and korag needs only the data files)."""
    spec = importlib.util.find_spec("konlpy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("konlpy", "is not installed: `pip install konlpy` provides the kobill corpus")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "corpus" / "kobill"


def _paragraphs(text: str) -> list[str]:
    """The paragraphs of one bill's extracted text: wrapped lines joined, blank lines, page
    numbers and form feeds dropped.

    The extraction keeps a trailing space where a line broke between words and none where it
    broke inside a word, so a line is joined to the previous one with a space or directly; a
    short line, a line ending in a full stop or colon, or a next line that is indented or opens
    an item ends the paragraph."""
    lines = [ln for ln in text.replace("\x0c", "\n").split("\n") if ln.strip() and not _NOISE.match(ln)]
    paragraphs: list[str] = []
    current = ""
    previous = ""
    for line in lines:
        body = re.sub(r"\s+", " ", line.strip())
        last = previous.rstrip()
        if not current:
            current = body
        elif line[:1].isspace() or _ITEM.match(line) or len(last) < 20 or last.endswith((".", ":")):
            paragraphs.append(current)
            current = body
        else:
            current += (" " if previous[-1:].isspace() else "") + body
        previous = line
    if current:
        paragraphs.append(current)
    return paragraphs


def _sections(paragraphs: list[str]) -> list[tuple[str, list[str]]]:
    """(kind, paragraphs) of each section of a bill, in order; the first is the proposal."""
    sections: list[tuple[str, list[str]]] = [("proposal", [])]
    for para in paragraphs:
        squeezed = re.sub(r"\s+", "", para)
        kind = next((k for k, pattern in _SECTIONS if pattern.search(squeezed)), None)
        if kind is not None:
            sections.append((kind, []))
        sections[-1][1].append(para)
    return [s for s in sections if s[1]]


def _pack(paragraphs: list[str], max_chars: int) -> list[str]:
    """Paragraphs packed into passages of at most `max_chars` characters (a longer paragraph is
    cut between sentences; a single longer sentence stays whole)."""
    pieces: list[str] = []
    for para in paragraphs:
        if len(para) <= max_chars:
            pieces.append(para)
            continue
        part = ""
        for sentence in _SENTENCE_END.split(para):
            if part and len(part) + 1 + len(sentence) > max_chars:
                pieces.append(part)
                part = sentence
            else:
                part = f"{part} {sentence}" if part else sentence
        if part:
            pieces.append(part)
    passages: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > max_chars:
            passages.append(current)
            current = piece
        else:
            current = f"{current}\n{piece}" if current else piece
    if current:
        passages.append(current)
    return passages


def _shingles(paragraphs: list[str], n: int = 5) -> set[str]:
    """Character n-grams of the paragraphs with whitespace removed (page breaks move spaces)."""
    text = re.sub(r"\s+", "", "".join(paragraphs))
    return {text[i : i + n] for i in range(max(len(text) - n + 1, 1))}


def kobill_corpus(directory: str | Path | None = None) -> Corpus:
    """The kobill passages: ids ``<bill number>-<n>`` (n counts the bill's kept passages from 0),
    title the bill's name, meta the bill and section kind. `directory` defaults to the installed
    konlpy's kobill folder."""
    folder = Path(directory) if directory is not None else kobill_dir()
    docs: list[Document] = []
    seen: list[set[str]] = []
    for name in BILLS:
        path = folder / name
        if not path.is_file():
            raise DataError(path, "is missing: not konlpy's kobill corpus (bills 1809890–1809899)")
        paragraphs = _paragraphs(path.read_text(encoding="utf-8"))
        bill = path.stem
        title = paragraphs[0] if paragraphs else bill
        n = 0
        for kind, paras in _sections(paragraphs):
            if kind == "table":
                continue
            # The four parental-leave bills attach one joint cost statement, its pages broken
            # differently in each, and two of them share a proposal: later copies would be
            # near-twins of the first, each answering the other's questions.
            grams = _shingles(paras[1:])
            if any(len(grams & g) >= 0.9 * len(grams | g) for g in seen):
                continue
            seen.append(grams)
            for text in _pack(paras, MAX_CHARS):
                docs.append(Document(f"{bill}-{n:02d}", text, title, {"bill": bill, "section": kind}))
                n += 1
    return Corpus.from_documents(docs, name="kobill")


def domain_rows() -> list[dict]:
    """The shipped questions (id, doc_id, question, answer, style, context_sha1, and for a few
    also_relevant: other passages that answer the question as fully)."""
    text = resources.files("korag.resources").joinpath(RESOURCE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def passage_sha1(text: str) -> str:
    """The first 12 hex digits of the SHA-1 of a passage's UTF-8 text (what a question records)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def load_domain(directory: str | Path | None = None) -> RetrievalSet:
    """The kobill set as a retrieval task over every kobill passage, each question judged
    relevant to the passage it was written for (and its ``also_relevant`` ones). `directory` is
    a kobill folder (default: the installed konlpy's); a passage whose text differs from the one
    a question was written for is refused."""
    folder = Path(directory) if directory is not None else kobill_dir()
    corpus = kobill_corpus(folder)
    ids, texts, judged = [], [], {}
    for row in domain_rows():
        doc = row["doc_id"]
        if doc not in corpus:
            raise DataError(
                folder, f"has no passage {doc!r}: not konlpy's kobill corpus", record=row["id"], field="doc_id"
            )
        if passage_sha1(corpus.get(doc).text) != row["context_sha1"]:
            raise DataError(
                folder / f"{doc.split('-')[0]}.txt",
                f"passage {doc!r} differs from the one the question was written for",
                record=row["id"],
                field="context_sha1",
            )
        also = row.get("also_relevant", [])
        for other in also:
            if other not in corpus:
                raise DataError(folder, f"has no passage {other!r}", record=row["id"], field="also_relevant")
        ids.append(row["id"])
        texts.append(row["question"])
        # a bill's summary and the article it sums up answer some questions equally well
        judged[row["id"]] = {doc: 1} | dict.fromkeys(also, 1)
    return RetrievalSet(corpus, Queries(ids, texts), Qrels(judged), name="kobill-domain")


def domain_overlap(directory: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Lexical overlap of the questions with their gold passages, per style and overall:
    ``{style: {"questions": n, "overlap": mean share of the question's content morphemes found in
    the passage}}`` (`korag.data.paraphrase.lexical_overlap`)."""
    from korag.data.paraphrase import lexical_overlap

    corpus = load_domain(directory).corpus
    shares: dict[str, list[float]] = defaultdict(list)
    for row in domain_rows():
        share = lexical_overlap(row["question"], corpus.get(row["doc_id"]).text)
        shares[row["style"]].append(share)
        shares["all"].append(share)
    return {style: {"questions": len(v), "overlap": round(sum(v) / len(v), 3)} for style, v in sorted(shares.items())}
