"""Mining Korean–English synonym pairs for the dictionary in `korag.text.synonyms`.

Korean technical writing glosses terms in the other language in brackets — ``광합성(photosynthesis)은``,
``DNA(디옥시리보핵산)``, ``반도체 [semiconductor]``. `pattern_candidates` harvests those pairs
with their counts; `embedding_candidates` pairs Korean and English terms that are each other's
nearest neighbour under a multilingual encoder; `verify_with_llm` asks a (small, base) model a
few-shot yes/no question per pair. Each candidate is a `SynonymEntry` recording which sources
support it and their scores. Mining lives here, above retrieval and the LLM backends it uses;
the dictionary itself stays in `korag.text`, where query expansion reads it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from korag.errors import ConfigError
from korag.text.korean import strip_suffix
from korag.text.synonyms import SynonymEntry

if TYPE_CHECKING:
    from korag.models.encoder import DenseEncoder
    from korag.synth.generation import GenerationConfig, Generator
    from korag.text.tokenize import Tokenizer

# -- candidates from bracket glosses ------------------------------------------------------------

_BRACKET = re.compile(r"([(（\[])([^()（）\[\]\n]{1,80})([)）\]])")
_PAIRS = {"(": ")）", "（": ")）", "[": "]"}
_KOREAN_WORD = re.compile(r"[가-힣]+")
_ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’.\-&]*")
_NUMBER = re.compile(r"\d+")
_PART_SPLIT = re.compile(r"[,;，、]")
_KOREAN_TAIL = re.compile(r"[가-힣]+$")
_ENGLISH_TAIL = re.compile(r"[A-Za-z][A-Za-z0-9'’.\-&]*$")
# Bracketed words that annotate the term rather than translate it: ``(약칭)``, ``(영어)``, …
_ANNOTATIONS = frozenset(
    "약칭 약어 약자 준말 줄임말 영어 영문 영문명 영어명 한자 한국어 국문 원어 원제 원문 본명 가칭 속칭 별칭 통칭 "
    "구칭 이명 이하 현재 당시 예 예시 생략 번역 직역 의역 주 참고 단수 복수 남성 여성 미상 추정".split()
)
# Words that cannot start a multi-word Korean term (bound nouns, determiners, adverbs).
_KOREAN_STOP = frozenset(
    """중 등 및 또는 혹은 그 이 저 각 약 총 곧 더 첫 새 한 두 세 네 여러 모든 어떤 이른바 소위 즉
    흔히 보통 주로 또한 특히 가장 매우 아주 바로 다시 처음 이후 현재 당시 최근 오늘날 이미 이제
    함께 모두 서로""".split()
)
_ENGLISH_STOP = frozenset(
    "the a an and or of in on at by for to with from as is are was were be this that these those".split()
)
_MAX_WORDS = 6


def _korean_name(text: str) -> str | None:
    """`text` if it is a Korean term: Hangul words only, ≥ 2 syllables, not an annotation."""
    words = text.split()
    if not words or len(words) > _MAX_WORDS or not all(_KOREAN_WORD.fullmatch(w) for w in words):
        return None
    # one syllable matches inside too many words to be a useful query-expansion key
    if sum(map(len, words)) < 2 or " ".join(words) in _ANNOTATIONS:
        return None
    return " ".join(words)


def _english_name(text: str) -> str | None:
    """`text` if it is an English word or phrase: Latin words (numbers allowed after the first),
    at least two letters, not only function words."""
    words = text.split()
    if not words or len(words) > _MAX_WORDS or not _ENGLISH_WORD.fullmatch(words[0]):
        return None
    if not all(_ENGLISH_WORD.fullmatch(w) or _NUMBER.fullmatch(w) for w in words[1:]):
        return None
    letters = sum(c.isascii() and c.isalpha() for c in text)
    if letters < 2 or all(w.lower() in _ENGLISH_STOP for w in words):
        return None
    return " ".join(words)


def _ends_phrase(word: str, strict: bool) -> bool:
    """Whether a Korean word ends the phrase before a name rather than being part of it: it
    carries a particle or ending (사건의 지평선, 관한 협의체). With `strict`, also a one-syllable
    word ending in ㄴ/ㄹ, the shape of a verb's modifier form (본부를 둔 국제올림픽위원회(IOC)),
    though a few nouns look the same (벨 연구소) — hence only where the term's length is a guess."""
    if strip_suffix(word) != word:
        return True
    return strict and len(word) == 1 and (ord(word) - 0xAC00) % 28 in (4, 8)


def _korean_span(glosses: Sequence[str]) -> tuple[int, bool]:
    """How many Korean words the English glosses may stand for, at most 4, and whether that is a
    guess: the glosses' word count (기계 학습(machine learning)), or — longer, so a guess — an
    acronym's letter count (에너지 저장 장치(ESS))."""
    words = max(len(g.split()) for g in glosses)
    letters = max((len(g) for g in glosses if g.isupper() and g.isalpha()), default=0)
    return (min(letters, 4), True) if letters > words else (min(words, 4), False)


def _preceding_term(before: str, korean: bool, max_words: int, *, strict: bool = False) -> str | None:
    """The term that a bracket glosses: the word right before it, extended leftwards to at most
    `max_words` words of the same script while the words look like parts of a name."""
    words = before.rstrip(" ").split(" ") if before.strip() else []
    if not words or len(before) - len(before.rstrip(" ")) > 1:
        return None
    tail = (_KOREAN_TAIL if korean else _ENGLISH_TAIL).search(words[-1])
    if tail is None:
        return None
    head = words[-1][: tail.start()]
    # 11호(Apollo 11), Python과자바(…): the run is glued to other letters or digits, not a whole term
    if head and (head[-1].isalnum() or head[-1] in "-_"):
        return None
    out = [tail.group(0)]
    if not head:  # a quote or bracket before the word ends the term
        for w in reversed(words[:-1]):
            if len(out) >= max_words:
                break
            if w in out:  # "블랙홀 블랙홀(black hole)": a title joined to its text
                break
            if korean:
                if not _KOREAN_WORD.fullmatch(w) or w in _KOREAN_STOP or _ends_phrase(w, strict):
                    break
            elif not _ENGLISH_WORD.fullmatch(w) or w.lower() in _ENGLISH_STOP:
                break
            out.append(w)
    return " ".join(reversed(out))


def _gloss_pairs(text: str) -> Iterator[tuple[str, str]]:
    """(Korean, English) pairs glossed in brackets in one text."""
    for m in _BRACKET.finditer(text):
        opener, inner, closer = m.groups()
        if closer not in _PAIRS[opener]:
            continue
        parts = [p.strip() for p in _PART_SPLIT.split(inner)]
        inner_ko = [k for k in map(_korean_name, parts) if k]
        inner_en = [e for e in map(_english_name, parts) if e]
        before = text[max(0, m.start() - 200) : m.start()]  # a term is never longer than this
        korean_names, english_names = list(inner_ko), list(inner_en)
        if inner_en:  # 광합성(photosynthesis): the Korean term stands before the bracket
            span, guess = _korean_span(inner_en)
            outer = _preceding_term(before, korean=True, max_words=span, strict=guess)
            if outer and _korean_name(outer):
                korean_names.append(outer)
        if inner_ko:  # DNA(디옥시리보핵산): the English term stands before the bracket
            span = max(len(k.split()) for k in inner_ko)
            outer = _preceding_term(before, korean=False, max_words=span)
            if outer and _english_name(outer):
                english_names.append(outer)
        for ko in dict.fromkeys(korean_names):
            for en in dict.fromkeys(english_names):
                yield ko, en


def pattern_candidates(texts: Iterable[str], *, min_count: int = 1) -> list[SynonymEntry]:
    """Pairs glossed in brackets — ``한국어(English)``, ``English(한국어)``, ``한국어 [English]``,
    full-width ``（…）`` too, several glosses split on commas — seen at least `min_count` times.

    Rejected: brackets holding years, numbers, single letters, Hanja, Korean on both sides or
    annotations such as ``(약칭)``. Particles after the bracket are not part of either term;
    a multi-word Korean term is kept up to as many words as the English gloss has
    (``기계 학습(machine learning)``)."""
    counts: Counter[tuple[str, str]] = Counter()
    surface: dict[tuple[str, str], str] = {}
    for text in texts:
        for ko, en in _gloss_pairs(text):
            key = (ko, en.casefold())
            counts[key] += 1
            surface.setdefault(key, en)
    return [
        SynonymEntry(ko, surface[(ko, en)], ("pattern",), {"pattern": float(n)})
        for (ko, en), n in counts.items()
        if n >= min_count
    ]


# -- candidates from embeddings -------------------------------------------------------------------

_ENGLISH_TERM = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]")
_KOREAN_TERM = re.compile(r"[가-힣]{2,}")


def corpus_terms(
    texts: Iterable[str],
    *,
    tokenizer: Tokenizer | str | None = None,
    min_count: int = 1,
    max_terms: int | None = None,
) -> tuple[list[str], list[str]]:
    """(Korean terms, English words) of a corpus, most frequent first.

    Korean terms are Hangul words with their particle stripped (`strip_suffix`), or — with a
    `tokenizer` such as ``make_tokenizer("kiwi", include_pos=["NN"])`` — its all-Hangul tokens;
    both keep ≥ 2 syllables. English terms are Latin words of ≥ 2 letters, as written."""
    korean: Counter[str] = Counter()
    english: Counter[str] = Counter()
    text_list = list(texts)
    if tokenizer is not None:
        from korag.text.tokenize import make_tokenizer

        for tokens in make_tokenizer(tokenizer).tokenize_batch(text_list):
            korean.update(t for t in tokens if len(t) >= 2 and _KOREAN_WORD.fullmatch(t))
    else:
        for text in text_list:
            # stripped down to one syllable, then dropped: 웹은 → 웹 is too short to be a term
            stems = (strip_suffix(w) for w in _KOREAN_TERM.findall(text))
            korean.update(s for s in stems if len(s) >= 2)
    for text in text_list:
        english.update(_ENGLISH_TERM.findall(text))

    def top(c: Counter[str]) -> list[str]:
        kept = [t for t, n in c.most_common() if n >= min_count]
        return kept[:max_terms] if max_terms is not None else kept

    return top(korean), top(english)


def embedding_candidates(
    korean_terms: Sequence[str],
    english_terms: Sequence[str],
    encoder: DenseEncoder | str | Path,
    *,
    threshold: float = 0.9,
    mutual: bool = True,
) -> list[SynonymEntry]:
    """Pairs whose embeddings are each other's nearest neighbour across the two term lists
    (or, without `mutual`, every Korean term's nearest English term), with cosine ≥ `threshold`.

    Terms are encoded as queries (with the encoder's query prefix: E5 is trained on short
    queries, and a bare term is closer to one than to a passage). The default threshold suits
    E5, whose cosines crowd into 0.8–0.95 even for unrelated terms; other models need their own.
    Single terms are a hard case for sentence encoders — multilingual-e5-small does not rank
    광합성 among the five nearest Korean terms of "photosynthesis" on the sample corpus — so
    treat these candidates as proposals for `verify_with_llm` or review, not as a dictionary."""
    from korag.models.encoder import DenseEncoder

    ko = list(dict.fromkeys(t for t in korean_terms if t.strip()))
    en = list(dict.fromkeys(t for t in english_terms if t.strip()))
    if not ko or not en:
        return []
    enc = encoder if isinstance(encoder, DenseEncoder) else DenseEncoder(encoder)
    sim = enc.encode_queries(ko) @ enc.encode_queries(en).T
    best_en = sim.argmax(axis=1)
    best_ko = sim.argmax(axis=0)
    out = []
    for i, j in enumerate(best_en.tolist()):
        cos = float(sim[i, j])
        if cos < threshold or (mutual and best_ko[j] != i):
            continue
        # clipped: bf16 rounding can push a normalised dot product a hair past ±1
        out.append(SynonymEntry(ko[i], en[j], ("embedding",), {"cosine": max(-1.0, min(1.0, cos))}))
    return out


# -- LLM verification -----------------------------------------------------------------------------

_FEW_SHOT = (
    ("광합성", "photosynthesis", True),
    ("중력", "electricity", False),
    ("반도체", "semiconductor", True),
    ("백신", "insulin", False),
    ("인공지능", "artificial intelligence", True),
    ("대통령", "parliament", False),
)
_INSTRUCTION = "다음은 한국어 용어와 영어 용어가 같은 뜻인지 묻는 질문이다. 같으면 예, 다르면 아니오로 답한다.\n\n"
_YES = frozenset({"예", "네", "yes", "y", "true", "맞음", "맞다", "맞습니다", "그렇다"})
_NO = frozenset({"아니오", "아니요", "아니", "no", "n", "false", "아님", "아니다", "아닙니다", "틀림"})


def _question(korean: str, english: str) -> str:
    return f"질문: '{korean}'의 영어 표현은 '{english}'입니까? 예/아니오\n답:"


def verification_prompt(korean: str, english: str) -> str:
    """A completion prompt (for base models) whose natural continuation is ``예`` or ``아니오``."""
    shots = "".join(f"{_question(k, e)} {'예' if ok else '아니오'}\n\n" for k, e, ok in _FEW_SHOT)
    return _INSTRUCTION + shots + _question(korean, english)


def parse_verdict(text: str) -> bool | None:
    """``True`` for yes (예, 네, yes, …), ``False`` for no (아니오, 아니요, no, …), ``None`` when the
    answer is neither. Only the first line's first word counts: a base model often keeps
    writing further questions after its answer."""
    lines = text.strip().splitlines()
    if not lines:
        return None
    words = lines[0].strip().split()
    if not words:
        return None
    first = words[0].strip(".,!?。:;'\"“”()").casefold()
    if first in _YES:
        return True
    if first in _NO or first.startswith("아니"):
        return False
    if first.startswith(("예", "네")):  # 예입니다, 네요
        return True
    return None


def verify_with_llm(
    entries: Iterable[SynonymEntry],
    generator: Generator,
    *,
    config: GenerationConfig | None = None,
    keep_rejected: bool = False,
) -> list[SynonymEntry]:
    """Ask `generator` about every pair; confirmed pairs gain the ``llm`` source and score 1.0.

    Rejected pairs are dropped, or with `keep_rejected` kept with ``llm`` = 0.0 (their `weight`
    is then 0, so lookups and query expansion skip them, but the verdict is remembered).
    Pairs whose answer cannot be parsed are returned unchanged — without the ``llm`` source —
    so they can be counted and retried."""
    from korag.synth.generation import GenerationConfig

    items = list(entries)
    if not items:
        return []
    cfg = config or GenerationConfig(max_tokens=4, temperature=0.0, stop=("\n",))
    answers = generator.generate([verification_prompt(e.korean, e.english) for e in items], cfg)
    if len(answers) != len(items):
        raise ConfigError(f"the generator returned {len(answers)} answers for {len(items)} prompts")
    out = []
    for entry, answer in zip(items, answers, strict=True):
        verdict = parse_verdict(answer)
        if verdict is None:
            out.append(entry)
            continue
        checked = entry.merged(SynonymEntry(entry.korean, entry.english, ("llm",), {"llm": 1.0 if verdict else 0.0}))
        if verdict or keep_rejected:
            out.append(checked)
    return out


# -- LLM discovery and dictionary enhancement -------------------------------------------------------

_DISCOVERY_SHOTS = (
    ("광합성", "photosynthesis"),
    ("반도체", "semiconductor"),
    ("인공지능", "artificial intelligence"),
)
_TERM_LABEL = re.compile(r"^\s*(?:영어|한국어|english|korean|답|translation)\s*[:：]\s*", re.I)
_TERM_KEYS = ("english", "korean", "term", "translation", "영어", "한국어")


def discovery_prompt(term: str) -> str:
    """A completion prompt asking for `term`'s equivalent in the other language (Korean → English
    for Hangul terms, English → Korean otherwise); its natural continuation is the term alone."""
    to_english = bool(_KOREAN_WORD.search(term))
    src, dst = ("한국어", "영어") if to_english else ("영어", "한국어")
    shots = [(ko, en) if to_english else (en, ko) for ko, en in _DISCOVERY_SHOTS]
    head = f"다음은 {src} 용어와 같은 뜻의 {dst} 용어이다. 같은 뜻의 용어가 없으면 없음이라고 쓴다.\n\n"
    body = "".join(f"{src}: {a}\n{dst}: {b}\n\n" for a, b in shots)
    return head + body + f"{src}: {term}\n{dst}:"


def parse_term(raw: str, *, english: bool) -> str | None:
    """The proposed term from an LLM's raw answer, as a valid English (or Korean) name, or None:
    a JSON object's ``english``/``korean``/``term``, else the first line without its label,
    quotes or a trailing explanation in brackets; ``없음`` / ``none`` mean no proposal."""
    from korag.synth.chat import extract_json

    text = (raw or "").strip()
    if text[:1] in "{[" or "```" in text:
        try:
            value = extract_json(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            text = next((str(value[k]) for k in _TERM_KEYS if isinstance(value.get(k), str)), "")
        elif isinstance(value, list) and value and isinstance(value[0], str):
            text = value[0]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    term = _TERM_LABEL.sub("", lines[0]).strip()
    term = re.split(r"\s*[(（\[]", term, maxsplit=1)[0]  # "semiconductor (반도체)" → the term
    term = term.strip().strip("\"'“”‘’`.,;:。").strip()
    if term.casefold() in ("없음", "none", "n/a", "-", "모름"):
        return None
    return _english_name(term) if english else _korean_name(term)


def _count_docs(term: str, texts: Sequence[str], english: bool) -> set[int]:
    """Indices of texts containing `term` (Korean: as a substring, particles attach; English:
    case-insensitively, not inside a longer Latin word)."""
    if english:
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(term)}(?![A-Za-z0-9])", re.I)
        return {i for i, t in enumerate(texts) if pattern.search(t)}
    return {i for i, t in enumerate(texts) if term in t}


def corpus_evidence(korean: str, english: str, texts: Sequence[str]) -> dict[str, float]:
    """Documents holding each form and both (scores ``corpus_ko``, ``corpus_en``, ``cooccur``)."""
    ko, en = _count_docs(korean, texts, False), _count_docs(english, texts, True)
    return {"corpus_ko": float(len(ko)), "corpus_en": float(len(en)), "cooccur": float(len(ko & en))}


def _verdicts(
    pairs: Sequence[tuple[str, str]], generator: Generator, config: GenerationConfig | None
) -> list[bool | None]:
    """The yes/no check of `verify_with_llm` for each pair (None: the answer was neither)."""
    from korag.synth.generation import GenerationConfig

    if not pairs:
        return []
    cfg = config or GenerationConfig(max_tokens=4, temperature=0.0, stop=("\n",))
    answers = generator.generate([verification_prompt(k, e) for k, e in pairs], cfg)
    if len(answers) != len(pairs):
        raise ConfigError(f"the generator returned {len(answers)} answers for {len(pairs)} prompts")
    return [parse_verdict(a) for a in answers]


def discover_synonyms(
    texts: Sequence[str],
    generator: Generator,
    *,
    terms: int = 50,
    tokenizer: Tokenizer | str | None = None,
    min_count: int = 2,
    min_seen: int = 1,
    min_cooccur: int = 0,
    config: GenerationConfig | None = None,
    known: Iterable[SynonymEntry] = (),
    progress_file: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[list[SynonymEntry], dict[str, int]]:
    """Ask `generator` for the other-language equivalent of the corpus' most frequent terms
    (`terms` Korean and `terms` English, counted with `corpus_terms` over `tokenizer`), then keep
    a proposal only when the yes/no check confirms it and the corpus backs it: the proposed form
    appears in at least `min_seen` documents and both forms together in at least `min_cooccur`.

    Returns the kept entries (source ``llm``, score ``llm`` = 1.0 plus the corpus counts) and the
    counts of every step: ``asked``, then drops ``no_proposal`` (nothing usable, or not a name
    in the other script), ``known`` (already in `known`), ``rejected`` / ``unclear`` (the yes/no
    check said no / neither), ``unseen`` and ``not_cooccurring``; ``kept``. The proposals are
    resumable through `progress_file`."""
    from korag.synth.generation import GenerationConfig
    from korag.synth.toolbox import ProgressLog, run_prompts

    if terms < 1:
        raise ConfigError(f"terms must be at least 1 (got {terms})")
    ko_terms, en_terms = corpus_terms(texts, tokenizer=tokenizer, min_count=min_count, max_terms=terms)
    asked = [*ko_terms, *en_terms]
    cfg = config or GenerationConfig(max_tokens=16, temperature=0.0, stop=("\n",))
    progress = None
    if progress_file is not None:
        settings = {"tool": "synonym-discovery", "template": discovery_prompt("{term}"), "config": cfg.to_dict()}
        progress = ProgressLog(progress_file, {**settings, "model": generator.describe()})
    raw = run_prompts(
        {t: discovery_prompt(t) for t in asked},
        generator,
        cfg,
        progress=progress,
        desc="synonym proposals",
        show_progress=show_progress,
    )
    counts = dict.fromkeys(("asked", "no_proposal", "known", "rejected", "unclear", "unseen", "not_cooccurring"), 0)
    counts["asked"] = len(asked)
    known_keys = {e.key for e in known}
    proposals: dict[tuple[str, str], tuple[str, str]] = {}
    for term in asked:
        source_korean = bool(_KOREAN_WORD.search(term))
        other = parse_term(raw[term][0], english=source_korean)
        if other is None:
            counts["no_proposal"] += 1
            continue
        ko, en = (term, other) if source_korean else (other, term)
        key = (ko, en.casefold())
        if key in known_keys or key in proposals:
            counts["known"] += 1
            continue
        proposals[key] = (ko, en)
    pairs = list(proposals.values())
    out = []
    for (ko, en), verdict in zip(pairs, _verdicts(pairs, generator, None), strict=True):
        if verdict is None:
            counts["unclear"] += 1
            continue
        if not verdict:
            counts["rejected"] += 1
            continue
        evidence = corpus_evidence(ko, en, texts)
        if min(evidence["corpus_ko"], evidence["corpus_en"]) < min_seen:
            counts["unseen"] += 1
            continue
        if evidence["cooccur"] < min_cooccur:
            counts["not_cooccurring"] += 1
            continue
        out.append(SynonymEntry(ko, en, ("llm",), {"llm": 1.0, **evidence}))
    counts["kept"] = len(out)
    return out, counts


def enhance_dictionary(
    entries: Iterable[SynonymEntry],
    texts: Sequence[str],
    generator: Generator,
    *,
    min_seen: int = 1,
    trusted: Sequence[str] = ("manual", "pattern"),
    keep_rejected: bool = False,
    config: GenerationConfig | None = None,
) -> tuple[list[SynonymEntry], dict[str, int]]:
    """Re-score an existing dictionary's entries with discovery's checks: the LLM yes/no verdict
    (replacing any earlier one) and the corpus counts.

    An entry is dropped when the LLM rejects it (with `keep_rejected` it stays with ``llm`` = 0,
    weight 0, as `verify_with_llm` does) or when either form appears in fewer than `min_seen`
    documents — unless one of its sources is `trusted` (a hand-made or corpus-glossed pair
    stands on its own evidence; a corpus that lacks a term says nothing against it). An unclear
    answer leaves the entry's verdict as it was. Counts: ``entries``, ``rejected``, ``unseen``,
    ``unclear``, ``kept``."""
    items = list(entries)
    counts = dict.fromkeys(("entries", "rejected", "unseen", "unclear", "kept"), 0)
    counts["entries"] = len(items)
    verdicts = _verdicts([(e.korean, e.english) for e in items], generator, config)
    out = []
    for entry, verdict in zip(items, verdicts, strict=True):
        evidence = corpus_evidence(entry.korean, entry.english, texts)
        scores = {**evidence}
        sources: tuple[str, ...] = ()
        if verdict is None:
            counts["unclear"] += 1
        else:
            scores["llm"], sources = (1.0 if verdict else 0.0), ("llm",)
        # the new check replaces the old one: merged() takes other's llm score and adds sources
        checked = entry.merged(SynonymEntry(entry.korean, entry.english, sources, scores))
        checked.scores.update(evidence)  # counts are a snapshot of this corpus, not summed
        if verdict is False:
            counts["rejected"] += 1
            if keep_rejected:
                out.append(checked)
            continue
        trusted_entry = bool(set(entry.sources) & set(trusted))
        if not trusted_entry and min(evidence["corpus_ko"], evidence["corpus_en"]) < min_seen:
            counts["unseen"] += 1
            continue
        out.append(checked)
    counts["kept"] = len(out) - (counts["rejected"] if keep_rejected else 0)
    return out, counts
