"""A constructed Korean fact world for checking memory models where the truth is known: people
with a job, a home town and a favourite food, and towns with a mayor. Every fact is stated in
exactly one document, so which memory a question needs — and, for two-hop questions (a person's
home town's mayor), which two in which order — is certain.

Used by the mechanism tests and the tiny-LM sweeps; `lm_texts` gives a background world's
documents and text-in-context QA lines to pre-train a tiny LM on the language (not on the facts
under test), the stand-in for a real LM's pre-training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from korag.data.schema import Corpus, QAExample, QASet

SYLLABLES = list("가나다라마바사아자차카타파하")
JOBS = ["어부", "농부", "교사", "의사", "화가", "기자", "군인", "상인"]
TOWNS = ["서울", "부산", "대구", "광주", "대전", "울산", "수원", "전주"]
FOODS = ["국수", "김밥", "떡", "만두", "비빔밥", "냉면", "라면", "죽"]


@dataclass(frozen=True)
class Person:
    """One person's facts."""

    name: str
    job: str
    town: str
    food: str


def _names(n: int, rng: random.Random, taken: set[str]) -> list[str]:
    if n > len(SYLLABLES) ** 3 - len(taken):
        raise ValueError(f"at most {len(SYLLABLES) ** 3} distinct names")
    out: list[str] = []
    while len(out) < n:
        name = "".join(rng.choice(SYLLABLES) for _ in range(3))
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


class SyntheticWorld:
    """`n_people` people and the towns' mayors, drawn from `seed`."""

    def __init__(self, n_people: int, *, seed: int = 0, exclude: set[str] | None = None) -> None:
        rng = random.Random(seed)
        taken = set(exclude or ())
        names = _names(n_people + len(TOWNS), rng, taken)
        self.people = [Person(n, rng.choice(JOBS), rng.choice(TOWNS), rng.choice(FOODS)) for n in names[:n_people]]
        self.mayors = dict(zip(TOWNS, names[n_people:], strict=True))

    @staticmethod
    def person_text(p: Person) -> str:
        """The one document that states a person's facts."""
        return f"{p.name} 씨의 직업은 {p.job}이고 고향은 {p.town}이며 좋아하는 음식은 {p.food}이다"

    def town_text(self, town: str) -> str:
        """The one document that names a town's mayor."""
        return f"{town}의 시장은 {self.mayors[town]} 씨이다"

    def corpus(self, *, towns: bool = True) -> Corpus:
        """People's documents (ids ``p0…``, titled by name), then the towns' (``t0…``, titled by town)."""
        ids = [f"p{i}" for i in range(len(self.people))]
        texts = [self.person_text(p) for p in self.people]
        titles = [p.name for p in self.people]
        if towns:
            ids += [f"t{i}" for i in range(len(TOWNS))]
            texts += [self.town_text(t) for t in TOWNS]
            titles += list(TOWNS)
        return Corpus(ids, texts, titles, name="synthetic-world")

    def one_hop(self, *, attributes: tuple[str, ...] = ("job", "town"), towns: bool = True) -> list[QAExample]:
        """Single-document questions about every person (and every town's mayor)."""
        asks = {"job": "{} 씨의 직업은?", "town": "{} 씨의 고향은?", "food": "{} 씨가 좋아하는 음식은?"}
        out = []
        for i, p in enumerate(self.people):
            for a in attributes:
                out.append(QAExample(f"p{i}-{a}", asks[a].format(p.name), (getattr(p, a),), (f"p{i}",)))
        if towns:
            for j, t in enumerate(TOWNS):
                out.append(QAExample(f"t{j}-mayor", f"{t}의 시장은?", (self.mayors[t],), (f"t{j}",)))
        return out

    def two_hop(self, people: range | list[int] | None = None) -> list[QAExample]:
        """ "Who is the mayor of X's home town?": the person's document, then the town's (hop order)."""
        rows = range(len(self.people)) if people is None else people
        out = []
        for i in rows:
            p = self.people[i]
            town = TOWNS.index(p.town)
            out.append(
                QAExample(f"p{i}-mayor", f"{p.name} 씨의 고향의 시장은?", (self.mayors[p.town],), (f"p{i}", f"t{town}"))
            )
        return out

    def qaset(self, examples: list[QAExample]) -> QASet:
        """`examples` over this world's corpus."""
        return QASet(self.corpus(), examples, name="synthetic-world")

    def hotpotqa(self, examples: list[QAExample]) -> list[dict[str, Any]]:
        """`examples` as HotpotQA records (every document in every context), for readers' tests."""
        corpus = self.corpus()
        context = [[t, [x]] for t, x in zip(corpus.titles, corpus.texts, strict=True)]
        titles = dict(zip(corpus.ids, corpus.titles, strict=True))
        return [
            {
                "_id": e.id,
                "question": e.question,
                "answer": e.answers[0],
                "supporting_facts": [[titles[d], 0] for d in e.doc_ids],
                "context": context,
            }
            for e in examples
        ]


def lm_texts(world: SyntheticWorld, *, seed: int = 0) -> list[str]:
    """A (background) world's documents and one text-in-context QA line per document — what a
    tiny LM pre-trains on so it knows the language and the task, not the facts under test."""
    from korag.memory.text_rag import text_prompt

    rng = random.Random(seed)
    corpus = world.corpus()
    texts = list(corpus.texts)
    by_doc = {}
    for e in world.one_hop(attributes=("job", "town", "food")):
        by_doc.setdefault(e.doc_ids[0], []).append(e)
    docs = dict(zip(corpus.ids, corpus.texts, strict=True))
    for doc_id, examples in by_doc.items():
        e = rng.choice(examples)
        texts.append(f"{text_prompt(e.question, [docs[doc_id]])} {e.answers[0]}")
    return texts
