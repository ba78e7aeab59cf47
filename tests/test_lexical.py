"""Lexical resources: term IDF tables, trending terms, the Korean–English synonym dictionary and
query expansion with it (BM25 and learned sparse)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from korag.data.sample import load_sample, question_kinds
from korag.data.schema import Corpus
from korag.errors import ConfigError, DataError
from korag.eval.ir import evaluate_ranking
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.expansion import QueryExpansion
from korag.synth.generation import GenerationConfig, GeneratorBase
from korag.synth.synonyms import (
    corpus_terms,
    embedding_candidates,
    parse_verdict,
    pattern_candidates,
    verification_prompt,
    verify_with_llm,
)
from korag.text.idf import read_term_idf, term_idf, write_term_idf
from korag.text.synonyms import SynonymDict, SynonymEntry
from korag.text.tokenize import make_tokenizer
from korag.text.trends import (
    TrendingTerm,
    boost_weights,
    split_by_date,
    split_by_window,
    trending_terms,
    trending_terms_by_date,
)

# -- term IDF -------------------------------------------------------------------------------------


def test_term_idf_is_bm25_idf_and_round_trips(tmp_path):
    docs = [["서울", "한강", "서울"], ["서울", "부산"], ["광주"], ["부산", "항구"]]
    idf = term_idf(docs)
    n = len(docs)
    for term, df in {"서울": 2, "한강": 1, "부산": 2, "광주": 1, "항구": 1}.items():
        assert idf[term] == pytest.approx(math.log(1 + (n - df + 0.5) / (df + 0.5)), rel=1e-6)
    assert set(idf) == {"서울", "한강", "부산", "광주", "항구"}
    write_term_idf(tmp_path / "idf.json", idf)
    assert read_term_idf(tmp_path / "idf.json") == pytest.approx(idf)
    with pytest.raises(DataError, match="empty corpus"):
        term_idf([])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"idf\.json: line 1: malformed JSON"),
        ('["서울", 1.0]', r"idf\.json: expected an object mapping terms to weights, got list"),
        ('{"서울": 1.0, "부산": "high"}', r"idf\.json: term '부산': weight must be a finite number, got 'high'"),
        ('{"서울": true}', r"term '서울': weight must be a finite number, got True"),
        ('{"서울": NaN}', r"term '서울': weight must be a finite number, got nan"),
    ],
)
def test_malformed_idf_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "idf.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_term_idf(path)


# -- trending terms -----------------------------------------------------------------------------

_TOPICS = [
    "정부가 새로운 교통 정책을 발표하였다",
    "지역 축제에 많은 관광객이 몰렸다",
    "프로 야구 경기에서 역전승이 나왔다",
    "겨울철 난방비 부담이 커지고 있다",
    "대학 입시 제도가 바뀔 예정이다",
    "새 아파트 분양 가격이 공개되었다",
    "도서관이 주말 운영 시간을 늘렸다",
    "전통 시장 상인들이 할인 행사를 열었다",
]


_FILLERS = ["날씨", "교통", "물가", "환율", "주식", "건강"]


def _news(n: int, rng: random.Random, planted: dict[str, float]) -> list[str]:
    """Documents of 2–3 topic sentences, half of them opened by '오늘 발표에 따르면', closed by
    'X 관련 소식이 이어졌다' for each planted word X drawn (with its probability) or else for a
    filler, so the frame around the planted words is spread evenly."""
    docs = []
    for _ in range(n):
        parts = rng.sample(_TOPICS, rng.randint(2, 3))
        if rng.random() < 0.5:
            parts.insert(0, "오늘 발표에 따르면")
        subjects = [w for w, p in planted.items() if rng.random() < p] or [rng.choice(_FILLERS)]
        docs.append(" ".join([*parts, *(f"{w} 관련 소식이 이어졌다" for w in subjects)]))
    return docs


@pytest.fixture(scope="module")
def news_tokens():
    rng = random.Random(7)
    tok = make_tokenizer("bigram-stem")
    background = tok.tokenize_batch(_news(120, rng, {"챗GPT": 0.01, "반도체": 0.03}))
    recent = tok.tokenize_batch(_news(40, rng, {"챗GPT": 0.6, "반도체": 0.45}))
    return tok, recent, background


def test_planted_trends_rise_to_the_top_and_common_words_do_not(news_tokens):
    tok, recent, background = news_tokens
    found = trending_terms(recent, background)
    # the planted words' tokens, plus the bigrams bridging them to their neighbours ("있다 챗GPT
    # 관련" → 다챗, t관): those rose with them. Nothing else: not the frame, topics or particles.
    chat = set(tok.tokenize("다 챗GPT 관")) - {"다", "관"}
    chip = set(tok.tokenize("다 반도체 관")) - {"다", "관"}
    assert "챗gpt" in chat and "반도체" in chip
    # 챗GPT was planted more strongly, so all its tokens come first (they tie: same documents)
    assert [t.term for t in found[: len(chat)]] == sorted(chat)
    assert {t.term for t in found[len(chat) :]} == chip
    common = set(tok.tokenize("오늘 발표에 따르면 날씨 관련 소식이 이어졌다 정부가 관광객이 아파트 도서관이"))
    assert not common & {t.term for t in found}
    assert all(isinstance(t, TrendingTerm) and t.log_ratio >= 1.0 and t.z_score >= 3.0 for t in found)
    assert [t.z_score for t in found] == sorted((t.z_score for t in found), reverse=True)
    first = next(t for t in found if t.term == "챗gpt")
    assert first.recent_df == sum("챗gpt" in d for d in recent)
    assert first.background_df == sum("챗gpt" in d for d in background)
    by_ratio = trending_terms(recent, background, rank_by="log_ratio", top_k=3)
    assert len(by_ratio) == 3 and by_ratio[0].log_ratio >= by_ratio[1].log_ratio >= by_ratio[2].log_ratio


def test_min_count_counts_recent_documents():
    recent = [["새말", "a"], ["새말", "b"], ["c"], ["d"]]
    background = [["e"], ["f"], ["g"], ["h"], ["i"], ["j"]]
    loose = trending_terms(recent, background, min_count=2, min_z=0.0, min_log_ratio=0.0)
    assert [t.term for t in loose] == ["새말"] and loose[0].recent_df == 2 and loose[0].background_df == 0
    assert trending_terms(recent, background, min_count=3, min_z=0.0, min_log_ratio=0.0) == []
    with pytest.raises(ConfigError, match="min_count"):
        trending_terms(recent, background, min_count=0)
    with pytest.raises(DataError, match="no background documents"):
        trending_terms(recent, [])


def test_date_splits_and_trends_by_date():
    dates = ["2024-01-05", "2024-02-10", "2024-03-01", "2024-03-15T09:30:00", "2024-03-20"]
    assert split_by_date(dates, "2024-03-01") == ([2, 3, 4], [0, 1])
    assert split_by_date(dates, "2024-02-01", until="2024-03-10") == ([1, 2], [0])
    assert split_by_window(dates, 7) == ([3, 4], [0, 1, 2])  # 2024-03-14 .. 2024-03-20
    with pytest.raises(DataError, match=r"document 2: not a date: '어제'"):
        split_by_date(["2024-01-01", "어제"], "2024-01-01")
    with pytest.raises(ConfigError, match="window is empty"):
        split_by_date(dates, "2024-03-01", until="2024-02-01")
    tokens = [["옛말"], ["옛말"], ["새말"], ["새말"], ["새말"]]
    found = trending_terms_by_date(tokens, dates, "2024-03-01", min_count=3, min_z=1.0)
    assert [t.term for t in found] == ["새말"]


def test_boost_multiplies_exactly_the_listed_terms():
    idf = {"서울": 1.0, "반도체": 2.0, "챗gpt": 3.0, "오늘": 0.5}
    trending = [TrendingTerm("반도체", 10, 1, 2.0, 5.0)]
    boosted = boost_weights(idf, trending, 1.5, keywords=["오늘", "신조어"])
    assert boosted == {"서울": 1.0, "반도체": 3.0, "챗gpt": 3.0, "오늘": 0.75, "신조어": 4.5}
    assert idf["반도체"] == 2.0  # the input is not modified
    # each term once, however often it is listed
    assert boost_weights(idf, ["서울", "서울"], 2.0, keywords=["서울"])["서울"] == 2.0
    tok = make_tokenizer("bigram-stem")
    by_tokens = boost_weights(
        {"챗g": 1.0, "gp": 1.0, "pt": 1.0, "챗gpt": 1.0, "서울": 1.0}, [], 2.0, keywords=["챗GPT"], tokenizer=tok
    )
    assert by_tokens == {"챗g": 2.0, "gp": 2.0, "pt": 2.0, "챗gpt": 2.0, "서울": 1.0}
    with pytest.raises(ConfigError, match="positive"):
        boost_weights(idf, ["서울"], 0.0)


# -- synonym candidates from bracket glosses --------------------------------------------------------

GLOSSED = [
    "광합성(photosynthesis)은 빛 에너지를 이용한다. 엽록체（chloroplast）에서 일어난다.",
    "DNA(디옥시리보핵산)는 유전 정보를 담는다. 반도체 [semiconductor]는 전기가 흐른다.",
    "인공지능(Artificial Intelligence, AI)은 기계 학습(machine learning)을 포함한다.",
    "광합성(photosynthesis)으로 만든 포도당, 사건의 지평선(event horizon)이라 부른다.",
    # junk: years, annotations, single letters, Korean on both sides, Hanja, numbers glued to Hangul
    "왓슨(1953년)이 밝혔다. WHO(약칭)는 국제기구다. 아데닌(A)과 이자(췌장), 비색(翡色), 아폴로 11호(Apollo 11), 세종(1397~1450)",
]


def test_pattern_candidates_cover_the_three_forms_and_reject_junk():
    entries = {(e.korean, e.english): e for e in pattern_candidates(GLOSSED)}
    assert set(entries) == {
        ("광합성", "photosynthesis"),
        ("엽록체", "chloroplast"),
        ("디옥시리보핵산", "DNA"),
        ("반도체", "semiconductor"),
        ("인공지능", "Artificial Intelligence"),
        ("인공지능", "AI"),
        ("기계 학습", "machine learning"),
        ("지평선", "event horizon"),
    }
    assert entries[("광합성", "photosynthesis")].scores == {"pattern": 2.0}
    assert entries[("반도체", "semiconductor")].sources == ("pattern",)
    assert {(e.korean, e.english) for e in pattern_candidates(GLOSSED, min_count=2)} == {("광합성", "photosynthesis")}


def test_sample_corpus_glosses():
    pairs = {(e.korean, e.english) for e in pattern_candidates(load_sample().corpus.texts)}
    expected = {("화성", "Mars"), ("파이썬", "Python"), ("디옥시리보핵산", "DNA"), ("벨 연구소", "Bell Labs")}
    assert expected <= pairs
    assert {("연구소", "Bell Labs"), ("세종대왕", "1397~1450")}.isdisjoint(pairs)
    assert all(
        e.korean.replace(" ", "").isalpha() and e.english for e in pattern_candidates(load_sample().corpus.texts)
    )


# -- the dictionary -------------------------------------------------------------------------------


@pytest.fixture
def small_dict():
    return SynonymDict(
        [
            SynonymEntry("광합성", "photosynthesis", ("pattern",), {"pattern": 2.0}),
            SynonymEntry("인공지능", "AI", ("pattern",), {"pattern": 1.0}),
            SynonymEntry("인공지능", "Artificial Intelligence", ("pattern",), {"pattern": 1.0}),
            SynonymEntry("엽록체", "chloroplast", ("embedding",), {"cosine": 0.8}),
            SynonymEntry("백신", "insulin", ("embedding", "llm"), {"cosine": 0.9, "llm": 0.0}),
        ]
    )


def test_lookup_both_ways_and_find_in_text(small_dict):
    assert small_dict.expansions("광합성") == [("photosynthesis", 1.0)]
    assert small_dict.expansions("PHOTOSYNTHESIS") == [("광합성", 1.0)]
    assert small_dict.expansions("인공지능") == [("AI", 1.0), ("Artificial Intelligence", 1.0)]
    assert small_dict.expansions("엽록체") == [("chloroplast", pytest.approx(0.8))]
    assert small_dict.expansions("백신") == []  # rejected by the LLM
    assert ("광합성", "Photosynthesis") in small_dict
    assert [s for _, _, s in small_dict.find("광합성은 엽록체에서 일어나고 ai가 said 한다")] == [
        "광합성",
        "엽록체",
        "ai",
    ]
    assert small_dict.find("백신 접종") == []


def test_merge_adds_evidence(small_dict):
    other = SynonymDict(
        [
            SynonymEntry("광합성", "Photosynthesis", ("pattern", "embedding"), {"pattern": 1.0, "cosine": 0.7}),
            SynonymEntry("중력", "gravity", ("manual",)),
        ]
    )
    merged = small_dict.merge(other)
    assert len(merged) == 6 and len(small_dict) == 5
    e = merged.get("광합성", "photosynthesis")
    assert e.sources == ("embedding", "pattern") and e.scores == {"pattern": 3.0, "cosine": 0.7}
    assert merged.expansions("gravity") == [("중력", 1.0)]
    assert len(merged.filter(min_weight=0.9)) == 4  # 엽록체 (0.8) and 백신 (rejected) fall out
    assert {x.korean for x in merged.filter(sources=["manual"])} == {"중력"}


def test_dictionary_round_trips(small_dict, tmp_path):
    path = tmp_path / "synonyms.json"
    small_dict.save(path)
    obj = json.loads(path.read_text(encoding="utf-8"))
    assert obj["format"] == "korag-synonyms" and len(obj["entries"]) == 5
    loaded = SynonymDict.load(path)
    assert sorted(e.to_dict().items().__repr__() for e in loaded) == sorted(
        e.to_dict().items().__repr__() for e in small_dict
    )
    assert loaded.expansions("백신") == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            '[{"korean": "광합성", "english": "photosynthesis"}, {"korean": "엽록체"}]',
            r"entry 2: field 'english': must be a non-empty string, got None",
        ),
        ('[{"korean": "", "english": "x"}]', r"entry 1: field 'korean': must be a non-empty string"),
        (
            '[{"korean": "광합성", "english": "p", "sources": ["guess"]}]',
            r"entry 1: field 'sources': must be a list drawn from",
        ),
        (
            '[{"korean": "광합성", "english": "p", "scores": {"cosine": "high"}}]',
            r"entry 1: field 'scores': score 'cosine' must be a finite number",
        ),
        ('["광합성"]', r"entry 1: expected an object, got str"),
        ('{"광합성": "p"}', r"field 'entries': expected a list"),
    ],
)
def test_malformed_dictionary_files_name_entry_and_field(tmp_path, entries, message):
    path = tmp_path / "synonyms.json"
    path.write_text(f'{{"format": "korag-synonyms", "version": 1, "entries": {entries}}}', encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        SynonymDict.load(path)
    assert str(path) in str(err.value)


def test_files_that_are_not_dictionaries_are_refused(tmp_path):
    path = tmp_path / "synonyms.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="malformed JSON"):
        SynonymDict.load(path)
    path.write_text('{"광합성": "photosynthesis"}', encoding="utf-8")
    with pytest.raises(DataError, match="not a korag synonym dictionary"):
        SynonymDict.load(path)
    with pytest.raises(DataError, match="file not found"):
        SynonymDict.load(tmp_path / "missing.json")


# -- embedding candidates and LLM verification -----------------------------------------------------


def test_corpus_terms_split_scripts():
    korean, english = corpus_terms(["광합성은 photosynthesis 과정이다. 광합성으로 웹은 Web", "광합성"])
    assert korean[0] == "광합성" and "웹은" not in korean and "웹" not in korean
    assert english == ["photosynthesis", "Web"]


def test_embedding_candidates_run_with_a_tiny_encoder(tiny_encoder):
    from korag.models.encoder import DenseEncoder

    encoder = DenseEncoder(tiny_encoder)
    korean = ["광합성", "한강", "서울", "세종대왕"]
    english = ["photosynthesis", "Han River", "Seoul"]
    everything = embedding_candidates(korean, english, encoder, threshold=-1.0, mutual=False)
    assert [e.korean for e in everything] == korean  # every Korean term keeps its nearest English one
    for e in everything:
        assert e.english in english and e.sources == ("embedding",) and -1.0 <= e.scores["cosine"] <= 1.0
    mutual = embedding_candidates(korean, english, encoder, threshold=-1.0)
    assert 1 <= len(mutual) <= len(english)
    assert len({e.english for e in mutual}) == len(mutual)  # mutual: one Korean partner per English term
    assert embedding_candidates(korean, english, encoder, threshold=1.01) == []
    assert embedding_candidates([], english, encoder) == []


class FakeGenerator(GeneratorBase):
    """Says 예 for one known pair, 아니오 for another and babbles otherwise; records prompts."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []
        self.configs: list[GenerationConfig] = []

    def generate(self, prompts, config):
        self.prompts += prompts
        self.configs.append(config)
        out = []
        for p in prompts:
            last = p.rsplit("질문:", 1)[1]
            if "'광합성'" in last and "'photosynthesis'" in last:
                out.append(" 예\n\n질문: 다음")
            elif "'백신'" in last:
                out.append(" 아니오.")
            else:
                out.append(" 음, 글쎄요")
        return out

    def describe(self):
        return {"backend": "fake"}


def test_llm_verification_plumbing():
    entries = [
        SynonymEntry("광합성", "photosynthesis", ("embedding",), {"cosine": 0.7}),
        SynonymEntry("백신", "insulin", ("embedding",), {"cosine": 0.9}),
        SynonymEntry("한강", "Han River", ("pattern",), {"pattern": 1.0}),
    ]
    gen = FakeGenerator()
    kept = verify_with_llm(entries, gen)
    assert len(gen.prompts) == 3 and gen.configs[0].temperature == 0.0 and "\n" in gen.configs[0].stop
    assert gen.prompts[0].endswith("질문: '광합성'의 영어 표현은 'photosynthesis'입니까? 예/아니오\n답:")
    assert gen.prompts[0].count("답: 예") >= 2 and gen.prompts[0].count("답: 아니오") >= 2  # few-shot, both answers
    by_pair = {(e.korean, e.english): e for e in kept}
    assert set(by_pair) == {("광합성", "photosynthesis"), ("한강", "Han River")}  # the rejected pair is dropped
    yes = by_pair[("광합성", "photosynthesis")]
    assert yes.sources == ("embedding", "llm") and yes.scores == {"cosine": 0.7, "llm": 1.0} and yes.weight == 1.0
    assert by_pair[("한강", "Han River")] is entries[2]  # no usable answer: left unverified
    marked = verify_with_llm(entries, FakeGenerator(), keep_rejected=True)
    rejected = next(e for e in marked if e.korean == "백신")
    assert rejected.rejected and rejected.weight == 0.0 and SynonymDict(marked).expansions("백신") == []


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (" 예", True),
        ("예.\n질문: ...", True),
        ("네, 같습니다", True),
        ("Yes", True),
        ("예입니다", True),
        (" 아니오", False),
        ("아니요.", False),
        ("아닙니다", False),
        ("no", False),
        ("", None),
        ("\n예", True),
        ("모르겠습니다", None),
        ("  ", None),
    ],
)
def test_verdicts_are_parsed_robustly(answer, verdict):
    assert parse_verdict(answer) is verdict


def test_verification_prompt_is_a_completion_prompt():
    prompt = verification_prompt("중력", "gravity")
    assert prompt.endswith("'중력'의 영어 표현은 'gravity'입니까? 예/아니오\n답:")
    assert prompt.count("질문:") == 7


# -- query expansion ------------------------------------------------------------------------------

EXPANSION_CORPUS = Corpus(
    ["ko", "en", "other"],
    [
        "광합성은 식물이 빛 에너지로 포도당을 만드는 과정이다",
        "Photosynthesis converts light energy into chemical energy in plants",
        "한강은 서울을 가로질러 흐르는 강이다",
    ],
)
PHOTO = SynonymDict([SynonymEntry("광합성", "photosynthesis", ("manual",))])


@pytest.fixture(scope="module")
def small_bm25():
    r = BM25Retriever("bigram-stem")
    r.index(EXPANSION_CORPUS)
    return r


def _all_scores(r, query, **kw):
    # a document that shares no term with the query is not returned: its BM25 score is 0
    return dict.fromkeys(r.doc_ids, 0.0) | dict(r.search([query], k=len(r), **kw).row(0))


def test_expanded_bm25_adds_weighted_synonym_scores(small_bm25):
    query = "광합성은 어떻게 일어나나"
    plain = _all_scores(small_bm25, query)
    synonym = _all_scores(small_bm25, "photosynthesis")
    expanded = _all_scores(small_bm25, query, expansion=QueryExpansion(PHOTO, weight=0.4))
    for doc in EXPANSION_CORPUS.ids:
        assert expanded[doc] == pytest.approx(plain[doc] + 0.4 * synonym[doc], abs=1e-5)
    assert synonym["en"] > 0 and expanded["en"] > plain["en"]
    # an English query finds the Korean passage only through the dictionary
    assert small_bm25.search(["photosynthesis in plants"], k=1).row(0)[0][0] == "en"
    english = _all_scores(small_bm25, "PHOTOSYNTHESIS", expansion=QueryExpansion(PHOTO, 0.5))
    assert english["ko"] > 0 and _all_scores(small_bm25, "PHOTOSYNTHESIS")["ko"] == 0


def test_expansion_off_or_empty_changes_nothing(small_bm25):
    queries = ["광합성은 어떻게 일어나나", "한강은 어디로 흐르나", "photosynthesis"]
    plain = small_bm25.search(queries, k=3)
    for expansion in (QueryExpansion(SynonymDict(), 0.5), QueryExpansion(PHOTO, 0.0)):
        got = small_bm25.search(queries, k=3, expansion=expansion)
        np.testing.assert_allclose(got.scores, plain.scores, rtol=1e-5)
        matched = plain.scores > 0  # documents without a query term tie at 0, in any order
        np.testing.assert_array_equal(got.indices[matched], plain.indices[matched])


def test_query_expansion_terms():
    d = SynonymDict(
        [
            SynonymEntry("인공지능", "AI", ("pattern",)),
            SynonymEntry("인공지능", "Artificial Intelligence", ("pattern",)),
            SynonymEntry("엽록체", "chloroplast", ("embedding",), {"cosine": 0.6}),
        ]
    )
    e = QueryExpansion(d, weight=0.5, max_per_term=1)
    assert e.terms("인공지능이란") == [("AI", 0.5)]
    assert e.terms("엽록체와 AI") == [("인공지능", 0.5), ("chloroplast", pytest.approx(0.3))]
    assert e.terms("인공지능(AI)") == []  # the synonym is already there
    synonyms, w = e.weight_matrix(["인공지능", "날씨", "엽록체 AI"])
    assert synonyms == ["AI", "인공지능", "chloroplast"]
    np.testing.assert_allclose(w.toarray(), [[0.5, 0, 0], [0, 0, 0], [0, 0.5, 0.3]], rtol=1e-6)
    with pytest.raises(ConfigError, match="expansion weight"):
        QueryExpansion(d, weight=1.5)


def test_sparse_query_vectors_add_weighted_synonyms(tiny_encoder):
    from korag.models.sparse import build_sparse_encoder, tokenizer_vocab_size
    from korag.retrieval.sparse import SparseRetriever
    from korag.text.hf import load_hf_tokenizer

    vocab = tokenizer_vocab_size(load_hf_tokenizer(str(tiny_encoder)))
    idf = np.linspace(0.5, 2.0, vocab, dtype=np.float32)
    retriever = SparseRetriever(build_sparse_encoder(str(tiny_encoder), idf=idf))
    queries = ["광합성은 무엇인가", "서울의 강"]
    expansion = QueryExpansion(PHOTO, weight=0.3)
    base = retriever.encode_queries(queries).toarray()
    synonym = retriever.encode_queries(["photosynthesis"]).toarray()[0]
    expanded = retriever.encode_queries(queries, expansion=expansion).toarray()
    assert np.abs(synonym).sum() > 0
    np.testing.assert_allclose(expanded[0], base[0] + 0.3 * synonym, rtol=1e-6)
    np.testing.assert_allclose(expanded[1], base[1])
    retriever.index(EXPANSION_CORPUS)
    assert retriever.search(queries, k=2, expansion=expansion).indices.shape == (2, 2)


# -- the sample set -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_bm25():
    qa = load_sample()
    rs = qa.to_retrieval_set()
    r = BM25Retriever("bigram-stem")
    r.index(rs.corpus)
    english = [q for q in rs.queries.ids if question_kinds()[q] == "english-term"]
    return qa, rs, r, english


def _mrr(r, rs, qids, expansion=None):
    ranking = r.search(rs.queries, k=10, expansion=expansion)
    res = evaluate_ranking(ranking, rs.qrels, ["mrr@10"])
    values = [v for q, v in zip(res.query_ids, res.per_query["mrr@10"], strict=True) if q in qids]
    return float(np.mean(values)), ranking


def test_pattern_dictionary_does_not_hurt_english_term_questions(sample_bm25):
    # Measured (bench/synonyms_sample.py): the sample's glosses cover none of the English terms
    # its english-term questions miss (Hangul Day, gravitational wave, …), so MRR@10 there is
    # unchanged at every weight; the expansions still fire and reorder lower ranks.
    qa, rs, r, english = sample_bm25
    d = SynonymDict(pattern_candidates(qa.corpus.texts))
    expansion = QueryExpansion(d, weight=0.5)
    base, base_ranking = _mrr(r, rs, set(english))
    expanded, ranking = _mrr(r, rs, set(english), expansion)
    assert expanded >= base - 1e-9
    fired = [i for i, q in enumerate(rs.queries.ids) if q in english and expansion.terms(rs.queries.texts[i])]
    assert len(fired) >= 5
    assert any(not np.array_equal(ranking.indices[i], base_ranking.indices[i]) for i in fired)


def test_a_dictionary_covering_the_missed_terms_strictly_helps(sample_bm25):
    # The mechanism on real data: a hand-made dictionary for the terms BM25 misses lifts MRR@10
    # on the english-term questions.
    _, rs, r, english = sample_bm25
    manual = SynonymDict(
        SynonymEntry(k, e, ("manual",))
        for k, e in [("중력파", "gravitational wave"), ("한글날", "Hangul Day"), ("한국은행", "Bank of Korea")]
    )
    base, _ = _mrr(r, rs, set(english))
    expanded, _ = _mrr(r, rs, set(english), QueryExpansion(manual, weight=0.5))
    assert expanded > base + 0.01
