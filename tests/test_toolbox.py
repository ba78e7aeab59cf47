"""The generation toolbox: pseudo-documents, paraphrases, written negatives, synonym discovery and
dictionary enhancement — parsing of malformed LLM output, each filter's counts, resumption, and
every command end to end through the CLI against korag's own OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korag.data.sample import load_sample
from korag.data.schema import Corpus
from korag.errors import ConfigError
from korag.synth.generation import GenerationConfig, GeneratorBase
from korag.synth.synonyms import discover_synonyms, enhance_dictionary, parse_term
from korag.synth.toolbox import (
    ProgressLog,
    QueryItem,
    ToolPrompt,
    generate_negatives,
    generate_paraphrases,
    generate_pseudo_documents,
    parse_list,
    parse_passage,
    run_prompts,
)
from korag.text.synonyms import SynonymEntry

GREEDY = GenerationConfig(max_tokens=32)


class Scripted(GeneratorBase):
    """Answers with `answer(prompt, sample)`; `sample` counts from the config's seed offsets."""

    def __init__(self, answer) -> None:
        super().__init__()
        self.answer = answer
        self.prompts: list = []

    def generate(self, prompts, config):
        self.prompts += list(prompts)
        self.stats.prompts += len(prompts)
        sample = (config.seed or 0) // 1000
        return [self.finish(self.answer(p, sample), config) for p in prompts]

    def describe(self):
        return {"backend": "scripted"}


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def _last_query(prompt) -> str:
    return _text(prompt).rsplit("질문: ", 1)[1].split("\n", 1)[0]


# -- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        (" 세종은 훈민정음을 만들었다.\n\n질문: 다음 예", "세종은 훈민정음을 만들었다."),
        ("헷갈리는 문단: 부산은 항구다.\n질문: 다음", "부산은 항구다."),
        ("문단: 세종은   한글을\n만들었다.", "세종은 한글을 만들었다."),
        ('{"passage": "세종은 한글을 만들었다."}', "세종은 한글을 만들었다."),
        ('```json\n{"document": "부산은 항구다."}\n```', "부산은 항구다."),
        ('{"passage": "세종은 한글을 만들', "세종은 한글을 만들"),  # cut off by max_tokens
        ('{"answer": "짧다", "본문": "훨씬 더 긴 본문 텍스트"}', "훨씬 더 긴 본문 텍스트"),
        ('{"passage":', ""),
        ("", ""),
        ("   \n  ", ""),
        ('["첫 문장.", "둘째 문장."]', "첫 문장. 둘째 문장."),
    ],
)
def test_parse_passage_handles_malformed_output(raw, expected):
    assert parse_passage(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('{"paraphrases": ["가는?", "나는?"]}', ["가는?", "나는?"]),
        ('["가는?", "가는?", "나는?"]', ["가는?", "나는?"]),
        ('{"paraphrases": ["가는?", "나는', ["가는?"]),  # truncated: the closed strings survive
        ("1. 가는?\n2) 나는?\n- 다는?", ["가는?", "나는?", "다는?"]),
        ("바꾼 질문: 가는?\n\n질문: 다음 예", ["가는?"]),
        ('```json\n{"queries": ["가는?"]}\n```', ["가는?"]),
        ('{"paraphrases": "하나뿐?"}', ["하나뿐?"]),
        ("", []),
    ],
)
def test_parse_list_handles_malformed_output(raw, expected):
    assert parse_list(raw) == expected


@pytest.mark.parametrize(
    "raw, english, expected",
    [
        (" photosynthesis", True, "photosynthesis"),
        ("Photosynthesis (광합성)", True, "Photosynthesis"),
        ('{"english": "semiconductor"}', True, "semiconductor"),
        ("영어: machine learning\n한국어: 기계 학습", True, "machine learning"),
        ("없음", True, None),
        ("광합성", True, None),  # asked for English, got Korean
        (" 반도체.", False, "반도체"),
        ("semiconductor", False, None),
        ("", False, None),
        ('{"korean":', False, None),
    ],
)
def test_parse_term(raw, english, expected):
    assert parse_term(raw, english=english) == expected


# -- the tools, each filter counted ----------------------------------------------------------------
def test_pseudo_documents_filters_and_counts():
    items = [
        QueryItem("a", "세종이 만든 문자는?", ("훈민정음",)),
        QueryItem("b", "부산은 우리나라에서 어떤 종류의 도시로 알려져 있는가?"),
    ]
    answers = {
        ("세종이 만든 문자는?", 0): '{"passage": "세종은 1443년에 훈민정음이라는 문자를 만들었다."}',
        ("세종이 만든 문자는?", 1): "세종은 1443년에 훈민정음이라는 문자를 만들었다.",  # duplicate
        ("세종이 만든 문자는?", 2): "짧다",  # length
        (
            "부산은 우리나라에서 어떤 종류의 도시로 알려져 있는가?",
            0,
        ): "부산은 우리나라에서 어떤 종류의 도시로 알려져 있는가?",  # echo
        (
            "부산은 우리나라에서 어떤 종류의 도시로 알려져 있는가?",
            1,
        ): "Busan is a large port city in the south.",  # language
        ("부산은 우리나라에서 어떤 종류의 도시로 알려져 있는가?", 2): '{"passage":',  # empty
    }
    gen = Scripted(lambda p, s: answers[(_last_query(p), s)])
    records, report = generate_pseudo_documents(items, gen, GREEDY, samples=3)
    assert report.generated == 6 and report.kept == 1
    assert report.dropped == {"empty": 1, "length": 1, "echo": 1, "language": 1, "duplicate": 1}
    assert report.notes == {"with_answer": 1}
    assert records == [
        {
            "query_id": "a",
            "query": "세종이 만든 문자는?",
            "pseudo_doc": "세종은 1443년에 훈민정음이라는 문자를 만들었다.",
            "answers": ["훈민정음"],
            "doc_ids": [],
        }
    ]
    assert [r[0] for r in report.rows()] == ["generated", *(f"after {n}" for n in report.dropped)]
    assert report.rows()[-1][1] == report.kept


def test_paraphrases_filters_and_roundtrip():
    from korag.retrieval.bm25 import BM25Retriever

    corpus = Corpus(["d1", "d2"], ["세종은 1443년에 훈민정음을 창제하였다.", "부산은 항구 도시이다."])
    item = QueryItem("q", "세종이 훈민정음을 만든 해는?", ("1443년",), ("d1",))
    chat = ToolPrompt("paraphrase", chat=True, paraphrases=6)
    raw = json.dumps(
        {
            "paraphrases": [
                "세종이 훈민정음을 만든 해는",  # identical (punctuation aside)
                "세종이 훈민정음을 창제한 연도는?",
                "세종이 훈민정음을 창제한 연도는?",  # duplicate
                "세종은 1443년에 무엇을 했나?",  # leaks the answer
                "When was Hangul made?",  # language
                "부산 항구는 어디?",  # loses the gold passage: round trip
            ]
        },
        ensure_ascii=False,
    )
    gen = Scripted(lambda p, s: raw)
    bm25 = BM25Retriever("bigram-stem")
    bm25.index(corpus)
    records, report = generate_paraphrases([item], gen, GREEDY, n=6, prompt=chat, retriever=bm25)
    assert [r["question"] for r in records] == ["세종이 훈민정음을 창제한 연도는?"]
    assert report.dropped == {
        "empty": 0,
        "length": 0,
        "identical": 1,
        "duplicate": 1,
        "language": 1,
        "answer": 1,
        "roundtrip": 1,
    }
    assert records[0] == {
        "id": "q-p1",
        "question": "세종이 훈민정음을 창제한 연도는?",
        "answers": ["1443년"],
        "source_id": "q",
        "doc_ids": ["d1"],
    }
    assert "3개" not in _text(gen.prompts[0]) and "6개" in _text(gen.prompts[0])  # chat asks for n at once
    # completion prompts are sampled n times, one paraphrase per line
    gen2 = Scripted(lambda p, s: ["세종이 훈민정음을 창제한 연도는?\n질문: 다음", ""][s])
    records, report = generate_paraphrases([item], gen2, GREEDY.__class__(temperature=0.7), n=2)
    assert len(gen2.prompts) == 2 and report.generated == 2 and report.dropped["empty"] == 1 and len(records) == 1


def test_written_negatives_are_guarded_by_answer_copy_and_retriever():
    from korag.retrieval.bm25 import BM25Retriever

    corpus = Corpus(
        ["d1", "d2", "d3"],
        ["세종은 1443년에 훈민정음을 창제하였다.", "부산은 항구 도시이다.", "한강은 서울을 흐른다."],
        ["세종", "부산", "한강"],
    )
    item = QueryItem("q", "훈민정음 창제 연도", ("1443년",), ("d1",))
    outputs = [
        "훈민정음은 1443년에 만들어진 문자이다.",  # answer
        "세종은 1443년에 훈민정음을 창제하였다",  # copy of the gold passage
        "훈민정음 창제 연도 훈민정음 창제 연도 창제 연도에 대해서는 여러 주장이 있다.",  # above the gold passage
        "바다와 산이 어우러진 풍경은 언제 보아도 아름답다고들 말한다.",  # not similar
        "훈민정음은 백성이 쉽게 익히도록 만든 문자로 오늘날 한글이라 부른다.",  # kept
        '{"passage": ',  # empty
    ]
    gen = Scripted(lambda p, s: outputs[s])
    records, report = generate_negatives(
        [item, QueryItem("x", "고아 질문", (), ("nowhere",))],
        corpus,
        gen,
        GREEDY,
        samples=len(outputs),
        retriever=lambda: BM25Retriever("bigram-stem"),
    )
    assert report.dropped == {"empty": 1, "length": 0, "copy": 1, "answer": 1, "above_gold": 1, "not_similar": 1}
    assert report.kept == 1 and report.notes == {"queries_without_gold": 1, "queries_kept": 1}
    (rec,) = records
    # the training pairs format `korag synth queries --pairs` writes (query, positive, negatives, ids)
    assert set(rec) == {"query", "positive", "negatives", "query_id", "positive_id", "negative_ids"}
    assert rec["positive"] == "세종 세종은 1443년에 훈민정음을 창제하였다." and rec["positive_id"] == "d1"
    assert rec["negatives"] == ["세종 훈민정음은 백성이 쉽게 익히도록 만든 문자로 오늘날 한글이라 부른다."]
    assert rec["negative_ids"] == ["llm-negative:q:1"]
    prompt = _text(gen.prompts[0])
    assert "답: 1443년" in prompt and "정답 문단: 세종은 1443년에" in prompt


# -- resumption -------------------------------------------------------------------------------
def test_progress_log_resumes_and_refuses_other_settings(tmp_path):
    prompts = {f"k{i}": f"질문: {i}번\n문단:" for i in range(5)}
    calls: list[int] = []

    def flaky(p, s):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("killed")
        return f"답 {p}"

    path = tmp_path / "progress.jsonl"
    with pytest.raises(RuntimeError):
        run_prompts(prompts, Scripted(flaky), GREEDY, batch=2, progress=ProgressLog(path, {"a": 1}))
    log = ProgressLog(path, {"a": 1})
    assert set(log.done) == {"k0", "k1"}
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"key": "k2", "outp')  # a torn last line
    again = Scripted(lambda p, s: "다시")
    got = run_prompts(prompts, again, GREEDY, batch=2, progress=ProgressLog(path, {"a": 1}))
    assert len(again.prompts) == 3 and got["k0"] == [f"답 {prompts['k0']}"] and got["k4"] == ["다시"]
    assert len(path.read_text().splitlines()) == 6  # header + five items, the torn line gone
    with pytest.raises(ConfigError, match="other settings"):
        ProgressLog(path, {"a": 2})


# -- synonyms -------------------------------------------------------------------------------------
TEXTS = [
    "광합성은 식물이 빛으로 양분을 만드는 과정이다. 광합성 연구는 오래되었다.",
    "Photosynthesis converts light. 광합성과 photosynthesis는 같은 말이다.",
    "엽록소는 빛을 흡수한다. 엽록소 분자는 초록색이다.",
    "Chlorophyll absorbs light.",
    "반도체 산업은 크다. 반도체 공장이 늘었다.",
    "세포는 생명의 단위이다. 세포 분열이 일어난다.",
    "효소는 반응을 돕는다. 효소 enzyme 활성.",
]
PROPOSALS = {
    "광합성": "photosynthesis",
    "엽록소": "chlorophyll",
    "반도체": "transistor",  # the yes/no check rejects it
    "세포": "cell",  # never seen in the corpus
    "Photosynthesis": "광합성",  # the same pair again
    "효소": "enzyme",  # already in the dictionary
    "light": "빛",  # one syllable: not a term
}


def _synonym_llm(prompt, sample) -> str:
    text = _text(prompt)
    if text.endswith("답:"):  # the yes/no check
        korean, english = text.rsplit("질문: '", 1)[1].split("'의 영어 표현은 '")
        english = english.split("'", 1)[0]
        if korean == "광합성" and english == "unclear":
            return "글쎄요"
        return " 아니오" if (korean, english) in {("반도체", "transistor"), ("중력", "electricity")} else " 예"
    term = text.splitlines()[-2].split(": ", 1)[1]
    return " " + PROPOSALS.get(term, "없음")


def test_discover_synonyms_verifies_and_checks_corpus_evidence(tmp_path):
    gen = Scripted(_synonym_llm)
    found, counts = discover_synonyms(
        TEXTS, gen, terms=5, min_count=2, progress_file=tmp_path / "p.jsonl", known=[SynonymEntry("효소", "Enzyme")]
    )
    pairs = {(e.korean, e.english) for e in found}
    assert pairs == {("광합성", "photosynthesis"), ("엽록소", "chlorophyll")}
    assert counts == {
        "asked": 6,  # five Korean terms and "light"
        "no_proposal": 1,
        "known": 1,
        "rejected": 1,
        "unclear": 0,
        "unseen": 1,
        "not_cooccurring": 0,
        "kept": 2,
    }
    ph = next(e for e in found if e.korean == "광합성")
    assert ph.sources == ("llm",) and ph.weight == 1.0
    assert ph.scores["corpus_ko"] == 2 and ph.scores["corpus_en"] == 1 and ph.scores["cooccur"] == 1
    # a rerun reads the proposals back from the progress file: only the yes/no checks run again
    again = Scripted(_synonym_llm)
    found2, _ = discover_synonyms(TEXTS, again, terms=5, min_count=2, progress_file=tmp_path / "p.jsonl")
    assert all(_text(p).endswith("답:") for p in again.prompts) and len(found2) == 3  # no known pairs now
    _, strict = discover_synonyms(TEXTS, Scripted(_synonym_llm), terms=4, min_count=2, min_cooccur=2)
    assert strict["kept"] == 0 and strict["not_cooccurring"] == 2  # terms=4: 효소 is not asked


def test_enhance_dictionary_rescore_kept_and_dropped():
    entries = [
        SynonymEntry("광합성", "photosynthesis", ("pattern",), {"pattern": 2.0}),
        SynonymEntry("중력", "electricity", ("embedding",), {"cosine": 0.93}),  # the LLM says no
        SynonymEntry("세포", "cell", ("embedding",), {"cosine": 0.95}),  # "cell" never seen
        SynonymEntry("세포벽", "cell", ("manual",)),  # trusted: kept without corpus evidence
        SynonymEntry("광합성", "unclear", ("embedding",), {"cosine": 0.91}),  # no verdict, and unseen
    ]
    kept, counts = enhance_dictionary(entries, TEXTS, Scripted(_synonym_llm))
    assert counts == {"entries": 5, "rejected": 1, "unseen": 2, "unclear": 1, "kept": 2}
    by_pair = {(e.korean, e.english): e for e in kept}
    assert set(by_pair) == {("광합성", "photosynthesis"), ("세포벽", "cell")}
    assert by_pair[("광합성", "photosynthesis")].scores["llm"] == 1.0
    assert by_pair[("광합성", "photosynthesis")].scores["corpus_en"] == 1
    kept, counts = enhance_dictionary(entries, TEXTS, Scripted(_synonym_llm), keep_rejected=True)
    rejected = [e for e in kept if e.rejected]
    assert [(e.korean, e.english) for e in rejected] == [("중력", "electricity")] and rejected[0].weight == 0
    assert counts["kept"] == 2


# -- the commands, end to end against korag's own OpenAI-compatible server -----------------------------
class _ChatModel(GeneratorBase):
    """The model behind `korag llm serve`: scripted answers to the toolbox's chat prompts, some
    wrapped in reasoning, fences or cut off, as real instruction models write them."""

    def __init__(self, answers: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.answers = answers
        self.calls = 0

    def generate(self, prompts, config):
        self.calls += len(prompts)
        return [self._one(p) for p in prompts]

    def _one(self, prompt) -> str:
        if isinstance(prompt, str):
            return _synonym_llm(prompt, 0)
        system, user = prompt[0]["content"], prompt[-1]["content"]
        question = user.split("질문: ", 1)[1].split("\n", 1)[0]
        if "헷갈리는 문단" in system:
            return json.dumps({"passage": f"{question}에 대해서는 여러 기록이 전해지며 학자들의 해석이 다르다."})
        if "바꾼" in system:
            answer = self.answers.get(question, ("",))[0]
            return json.dumps(
                {"paraphrases": [question, f"{question} 알려 주세요", f"{answer} 말고 다른 답은?"]}, ensure_ascii=False
            )
        if question.endswith("몇 년인가?"):
            return (
                '<think>연도를 떠올린다</think>```json\n{"passage": "세종대왕은 1443년에 백성을 위한 문자인 훈민정음을'
            )
        return json.dumps({"passage": f"{question} 이 질문에 답하는 백과사전 문단이다."}, ensure_ascii=False)

    def describe(self):
        return {"backend": "chat-script"}


@pytest.fixture(scope="module")
def server():
    from korag.synth.serve import serve_in_thread

    answers = {e.question: e.answers for e in load_sample().examples}
    model = _ChatModel(answers)
    srv, _ = serve_in_thread(model, port=0, model_name="script")
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", model
    srv.shutdown()
    srv.server_close()


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_hyde_paraphrase_and_negatives_through_the_server(server, tmp_path):
    from conftest import run_cli

    url, model = server
    out = tmp_path / "hyde.jsonl"
    progress = tmp_path / "hyde.progress.jsonl"
    args = ("synth", "hyde", "builtin:sample", "-o", str(out), "--llm", url, "--limit", "4", "--progress")
    r = run_cli(*args, str(progress))
    assert r.returncode == 0, r.stderr
    assert "after echo" in r.stdout and "with answer: 1" in r.stdout
    records = _read_jsonl(out)
    assert (
        len(records) == 4 and records[0]["pseudo_doc"] == "세종대왕은 1443년에 백성을 위한 문자인 훈민정음을"
    )  # cut-off JSON
    report = json.loads((tmp_path / "hyde.report.json").read_text())
    assert report["generated"] == 4 and report["kept"] == 4 and report["tool"] == "hyde"
    before = model.calls
    assert run_cli(*args, str(progress)).returncode == 0 and model.calls == before  # all resumed

    para = tmp_path / "para.jsonl"
    pairs = tmp_path / "para-pairs.jsonl"
    r = run_cli(
        "synth", "paraphrase", "builtin:sample", "-o", str(para), "--llm", url, "--limit", "3", "-n", "3",
        "--roundtrip", "--pairs", str(pairs),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "para.report.json").read_text())
    assert report["generated"] == 9 and report["dropped"]["identical"] == 3 and report["dropped"]["answer"] == 3
    kept = _read_jsonl(para)
    assert len(kept) == report["kept"] and all(k["question"].endswith("알려 주세요") for k in kept)
    assert kept[0]["source_id"] == "q001" and kept[0]["answers"] == ["1443년", "1443"]
    assert all(p["positive_id"] == "p001" for p in _read_jsonl(pairs))

    neg = tmp_path / "neg.jsonl"
    r = run_cli("synth", "negatives", "builtin:sample", "-o", str(neg), "--llm", url, "--limit", "3")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "neg.report.json").read_text())
    assert list(report["dropped"]) == ["empty", "length", "copy", "answer", "above_gold", "not_similar"]
    rows = _read_jsonl(neg)
    assert sum(len(x["negatives"]) for x in rows) == report["kept"]
    assert all(x["positive_id"] == "p001" and "1443" not in " ".join(x["negatives"]) for x in rows)

    bad = run_cli("synth", "hyde", "builtin:sample", "-o", str(out), "--llm", url, "--limit", "0")
    assert bad.returncode == 2 and "--limit" in bad.stderr
    corpus_only = tmp_path / "c.jsonl"
    corpus_only.write_text('{"id": "a", "text": "본문"}\n', encoding="utf-8")
    bad = run_cli("synth", "negatives", str(corpus_only), "-o", str(neg), "--llm", url)
    assert bad.returncode == 2 and "no queries" in bad.stderr


def test_cli_lexicon_discover_and_enhance_through_the_server(server, tmp_path):
    from conftest import run_cli

    url, _ = server
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(TEXTS)),
        encoding="utf-8",
    )
    found = tmp_path / "found.json"
    r = run_cli("lexicon", "discover", str(corpus), "-o", str(found), "--llm", url, "--terms", "4")
    assert r.returncode == 0, r.stderr
    entries = json.loads(found.read_text())["entries"]
    assert {(e["korean"], e["english"]) for e in entries} == {("광합성", "photosynthesis"), ("엽록소", "chlorophyll")}
    counts = json.loads((tmp_path / "found.report.json").read_text())["counts"]
    assert counts["rejected"] == 1 and counts["kept"] == 2

    old = tmp_path / "old.json"
    from korag.text.synonyms import SynonymDict

    SynonymDict(
        [SynonymEntry("광합성", "photosynthesis", ("pattern",), {"pattern": 1.0}), SynonymEntry("중력", "electricity")]
    ).save(old)
    better = tmp_path / "better.json"
    r = run_cli("lexicon", "synonyms", str(corpus), "--enhance", str(old), "--llm", url, "-o", str(better))
    assert r.returncode == 0, r.stderr
    assert "kept 1, dropped 1" in r.stdout
    assert [e["english"] for e in json.loads(better.read_text())["entries"]] == ["photosynthesis"]
    old.write_text('{"format": "korag-synonyms", "version": 1, "entries": [{"korean": ""}]}', encoding="utf-8")
    bad = run_cli("lexicon", "synonyms", str(corpus), "--enhance", str(old), "--llm", url, "-o", str(better))
    assert bad.returncode == 2 and "entry 1" in bad.stderr and "korean" in bad.stderr


def test_cli_hyde_with_a_real_tiny_model(tmp_path):
    """The local transformers backend end to end: a random tiny LM writes noise, and the counts
    still add up."""
    from conftest import run_cli
    from korag.models.tiny import build_tiny_causal_lm

    lm = build_tiny_causal_lm(tmp_path / "lm", texts=load_sample().corpus.texts[:10], vocab_size=300)
    out = tmp_path / "hyde.jsonl"
    r = run_cli(
        "synth", "hyde", "builtin:sample", "-o", str(out), "--llm", str(lm), "--limit", "2", "--max-tokens", "8",
        "--min-chars", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "hyde.report.json").read_text())
    assert report["generated"] == 2 and report["kept"] + sum(report["dropped"].values()) == 2
    assert report["generator"]["backend"] == "transformers"
