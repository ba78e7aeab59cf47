#!/usr/bin/env python3
"""Check the korag Korean PDF benchmark: ``python verify.py [--quiet]``.

Typesets every content/*.json into a temporary directory (twice, to check that the output
is byte-for-byte deterministic) and checks every question in questions.jsonl:

  (a) src    - each answer occurs in the source content JSON text (markup removed);
  (b) pdf    - each answer occurs in pypdf's extraction of the stated page, after removing
               ALL whitespace from both;
  (c) broken - the answer is split by a line end in raw ``page.extract_text()``: with
               whitespace removed it is found in the page text but in no single line;
  and also   - unique: the answer (whitespace removed) occurs exactly once in the whole
               extracted document, so it is unambiguous (not also in the references etc.).

Then prints, for each PDF, the metadata title, pages, characters extracted per page and the
first 3 lines of every page (running headers/footers show up there). Exit status 1 if any
check fails.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from pypdf import PdfReader

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import typeset  # noqa: E402

KINDS = {"body", "table", "footnote", "figure-caption", "heading"}
NOT_TEXT = {"file", "layout", "genre", "metadata", "type", "kind", "image", "marker", "chart", "widths"}
MIN_PER_DOC = 20
MAX_ANSWER = 20


def squash(s: str) -> str:
    return "".join(s.split())


def content_text(spec) -> str:
    """All reader-visible strings of a content JSON, markup removed."""
    out = []

    def walk(x):
        if isinstance(x, str):
            out.append(typeset.plain(x))
        elif isinstance(x, list):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for k, v in x.items():
                if k not in NOT_TEXT:
                    walk(v)

    walk(spec)
    return "\n".join(out)


def break_kind(answer: str, raw: str) -> str:
    """How a line end splits the answer in raw text: "word" if it falls between two characters
    that the answer writes without a space (a word broken mid-word), else "space"."""
    a = squash(answer)
    lines = [squash(line) for line in raw.split("\n")]
    for l1, l2 in itertools.pairwise(lines):
        for k in range(1, len(a)):
            if l1.endswith(a[:k]) and l2.startswith(a[k:]):
                seen = 0
                for i, ch in enumerate(answer):  # find the k-th non-space character
                    if not ch.isspace():
                        seen += 1
                        if seen == k:
                            return "space" if i + 1 < len(answer) and answer[i + 1].isspace() else "word"
    return "lines"  # spread over more than two lines


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv) -> int:
    quiet = "--quiet" in argv
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    specs = {}
    for src in typeset.content_files():
        spec = json.loads(src.read_text(encoding="utf-8"))
        specs[spec["file"]] = (src.name, spec)

    problems: list[str] = []
    with tempfile.TemporaryDirectory() as t1, tempfile.TemporaryDirectory() as t2:
        made = typeset.typeset_all(Path(t1))
        again = typeset.typeset_all(Path(t2))
        for a, b in zip(made, again, strict=False):
            if sha(a) != sha(b):
                problems.append(f"{a.name}: output is not deterministic")
        pages: dict[str, list[str]] = {}
        meta_titles = {}
        for pdf in made:
            reader = PdfReader(pdf)
            pages[pdf.name] = [p.extract_text() or "" for p in reader.pages]
            meta_titles[pdf.name] = reader.metadata.title if reader.metadata else None
        hashes = {p.name: sha(p) for p in made}

    questions = [
        json.loads(line) for line in (HERE / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    ids = Counter(q["id"] for q in questions)
    problems += [f"duplicate id {i}" for i, n in ids.items() if n > 1]

    rows = []
    per_doc = Counter()
    per_kind = defaultdict(Counter)
    broken_per_doc = Counter()
    midword_per_doc = Counter()
    for q in questions:
        f = q["file"]
        per_doc[f] += 1
        per_kind[f][q["kind"]] += 1
        if f not in pages:
            problems.append(f"{q['id']}: unknown file {f}")
            continue
        if q["kind"] not in KINDS:
            problems.append(f"{q['id']}: unknown kind {q['kind']}")
        src_text = squash(content_text(specs[f][1]))
        doc_pages = pages[f]
        page_no = q["page"]
        raw = doc_pages[page_no - 1] if 1 <= page_no <= len(doc_pages) else ""
        page_sq = squash(raw)
        lines_sq = [squash(line) for line in raw.split("\n")]
        whole = "".join(squash(p) for p in doc_pages)
        found_src = found_pdf = False
        broken = False
        how = "-"
        occurrences = None
        for ans in q["answers"]:
            a = squash(ans)
            if len(ans) > MAX_ANSWER:
                problems.append(f"{q['id']}: answer longer than {MAX_ANSWER} characters: {ans!r}")
            if a in src_text:
                found_src = True
            if a in page_sq and not found_pdf:  # the first answer found on the page decides the rest
                found_pdf = True
                broken = not any(a in line for line in lines_sq)
                how = break_kind(ans, raw) if broken else "-"
                occurrences = whole.count(a)
        if not found_src:
            problems.append(f"{q['id']}: no answer found in the content JSON")
        if not found_pdf:
            where = sorted({n for n, t in enumerate(doc_pages, 1) for a in q["answers"] if squash(a) in squash(t)})
            problems.append(f"{q['id']}: no answer found on page {page_no} of {f} (found on pages {where})")
        if occurrences is not None and occurrences != 1:
            problems.append(f"{q['id']}: answer occurs {occurrences} times in {f} (ambiguous)")
        broken_per_doc[f] += broken
        midword_per_doc[f] += how == "word"
        rows.append((q["id"], q["kind"], page_no, found_src, found_pdf, how, occurrences, q["answers"][0], f))

    for f in pages:
        if per_doc[f] < MIN_PER_DOC:
            problems.append(f"{f}: only {per_doc[f]} questions (need {MIN_PER_DOC})")

    if not quiet:
        print("== questions")
        print(
            "(broken: '-' = on one line; 'word' = a line end splits a word of the answer; "
            "'space' = a line end replaces a space of the answer)"
        )
        print(f"{'id':<10} {'kind':<15} {'page':>4}  src  pdf  broken  occ  answer")
        for qid, kind, page, s, p, how, occ, ans, _ in rows:
            print(
                f"{qid:<10} {kind:<15} {page:>4}  {'ok' if s else 'NO':<4} {'ok' if p else 'NO':<4} "
                f"{how:<7} {occ if occ is not None else '-':>3}  {ans}"
            )

    print("\n== summary per document")
    print(f"{'file':<40} {'pages':>5} {'questions':>9} {'found':>6} {'broken':>6} {'(mid-word)':>10}  kinds")
    total = found_all = broken_all = 0
    for f in pages:
        found = sum(1 for r in rows if r[8] == f and r[3] and r[4])
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(per_kind[f].items()))
        print(
            f"{f:<40} {len(pages[f]):>5} {per_doc[f]:>9} {found:>6} {broken_per_doc[f]:>6} "
            f"{midword_per_doc[f]:>10}  {kinds}"
        )
        total += per_doc[f]
        found_all += found
        broken_all += broken_per_doc[f]
    all_kinds = Counter()
    for c in per_kind.values():
        all_kinds.update(c)
    print(
        f"{'TOTAL':<40} {sum(len(p) for p in pages.values()):>5} {total:>9} {found_all:>6} {broken_all:>6} "
        f"{sum(midword_per_doc.values()):>10}  " + ", ".join(f"{k} {n}" for k, n in sorted(all_kinds.items()))
    )

    print("\n== PDFs")
    for f, texts in pages.items():
        src_name, spec = specs[f]
        print(f"\n-- {f}  (from content/{src_name}; {spec['layout']}; sha256 {hashes[f]})")
        print(f"   metadata title: {meta_titles[f]!r}")
        print(f"   pages: {len(texts)}; characters per page: {[len(t) for t in texts]}")
        for i, t in enumerate(texts, 1):
            first = [line.strip() for line in t.split("\n") if line.strip()][:3]
            note = "  <-- little or no text" if len(squash(t)) < 100 else ""
            print(f"   p{i} ({len(t)} chars){note}")
            for line in first:
                print(f"      | {line[:90]}")

    print()
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in problems:
            print("  -", p)
        return 1
    print(
        f"OK: all {total} questions have every check passing; "
        f"{broken_all} answers are broken across a line end in raw extract_text() "
        f"({sum(midword_per_doc.values())} of them in the middle of a word)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
