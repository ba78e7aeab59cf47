"""Synthetic training data: LLM backends (transformers and a real local HTTP server), parsing,
filters, hard negatives, resumable generation and the enhancement flow's stage keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from korag.data.sample import load_sample
from korag.data.schema import Corpus
from korag.data.synthetic import SyntheticQuery, SyntheticSet
from korag.errors import ConfigError, DataError, ModelError
from korag.synth.generation import GenerationConfig, GeneratorBase


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    from korag.models.tiny import build_tiny_causal_lm

    qa = load_sample()
    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny-lm", texts=qa.corpus.texts[:20])


@pytest.fixture(scope="module")
def generator(tiny_lm):
    from korag.synth.llm import make_generator

    return make_generator(str(tiny_lm), batch_size=3, show_progress=False)


@pytest.fixture(scope="module")
def sample():
    return load_sample()


GREEDY = GenerationConfig(max_tokens=6, temperature=0.0)


# -- backends ---------------------------------------------------------------------------------
def test_transformers_backend_generates_batched_and_deterministic(generator):
    prompts = ["세종대왕은", "한강은 서울을", [{"role": "user", "content": "부산은"}], "광합성"]
    a = generator.generate(prompts, GREEDY)
    b = generator.generate(prompts, GREEDY)
    assert len(a) == 4 and all(isinstance(t, str) for t in a)
    assert a == b  # greedy decoding does not depend on batch composition or order
    # one at a time gives the same text as in a padded batch (left padding is right)
    assert generator.generate([prompts[1]], GREEDY) == [a[1]]
    sampled = generator.generate(prompts, GenerationConfig(max_tokens=6, temperature=1.0, seed=3))
    assert sampled == generator.generate(prompts, GenerationConfig(max_tokens=6, temperature=1.0, seed=3))
    assert generator.describe()["identity"].startswith("dir:")


def test_transformers_backend_stop_strings_and_scores(generator):
    free = generator.generate(["세종대왕은"], GenerationConfig(max_tokens=12))[0]
    assert len(free) > 2
    stop = free[1:3]
    cut = generator.generate(["세종대왕은"], GenerationConfig(max_tokens=12, stop=(stop,)))[0]
    assert stop not in cut and free.startswith(cut)
    scored = generator.generate_scored(["세종대왕은", "한강"], GREEDY)
    assert all(lp < 0 for _, lp in scored)
    # score() is the mean log-probability of the continuation's tokens, checked by hand
    import torch

    tok, model = generator.tokenizer, generator.model
    got = generator.score(["세종대왕은", "한강은 서울을"], [" 한글을", " 가로지른다"])
    for prompt, cont, value in zip(["세종대왕은", "한강은 서울을"], [" 한글을", " 가로지른다"], got, strict=True):
        head = tok(prompt)["input_ids"]
        tail = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([head + tail])).logits[0].float(), -1)
        manual = sum(float(logp[len(head) - 1 + j, t]) for j, t in enumerate(tail)) / len(tail)
        assert value == pytest.approx(manual, abs=1e-4)


def test_bad_prompts_and_specs_are_clear_errors(generator, tmp_path):
    from korag.synth.llm import make_generator

    with pytest.raises(ConfigError, match="prompt 2, message 1"):
        generator.generate(["ok", [{"role": "user"}]], GREEDY)
    with pytest.raises(ConfigError, match="temperature"):
        GenerationConfig(temperature=-1)
    with pytest.raises(ConfigError, match="unknown LLM"):
        make_generator("no-such-model")
    with pytest.raises(ModelError, match=r"config\.json"):
        make_generator(str(tmp_path))


def test_http_backend_against_a_real_local_server(generator):
    from korag.synth.llm import OpenAIHTTPGenerator
    from korag.synth.serve import serve_in_thread

    server, _ = serve_in_thread(generator, port=0, model_name="tiny")
    try:
        host, port = server.server_address[:2]
        client = OpenAIHTTPGenerator(f"http://{host}:{port}", model="tiny", concurrency=2, timeout=30)
        prompts = ["세종대왕은", [{"role": "user", "content": "부산은"}], "한강은 서울을"]
        assert client.generate(prompts, GREEDY) == generator.generate(prompts, GREEDY)
        assert client.stats.generated_tokens > 0
        import urllib.request

        with urllib.request.urlopen(f"http://{host}:{port}/v1/models", timeout=10) as r:
            assert json.loads(r.read())["data"][0]["id"] == "tiny"
        bad = OpenAIHTTPGenerator(f"http://{host}:{port}", chat=True, max_retries=0)
        with pytest.raises(ModelError, match=r"HTTP 400.*stop"):
            bad._post("/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": 3})
    finally:
        server.shutdown()
        server.server_close()


def test_http_backend_unreachable_server_is_a_clear_error():
    import socket

    from korag.synth.llm import OpenAIHTTPGenerator

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIHTTPGenerator(f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(ModelError, match=rf"cannot reach the LLM server at http://127.0.0.1:{port}/v1.*2 attempt"):
        client.generate(["안녕"], GREEDY)
    assert client.stats.retries == 1


# -- parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["서울의 인구는?", "한강 길이"]', ["서울의 인구는?", "한강 길이"]),
        ('```json\n{"queries": ["세종은 누구인가?"]}\n```', ["세종은 누구인가?"]),
        ('{"questions": ["완성된 질문", "잘린 질', ["완성된 질문"]),
        (
            '1. 질문: 세종은 누구인가?\n2) 한글 창제 연도\n- "훈민정음"\n\n',
            ["세종은 누구인가?", "한글 창제 연도", "훈민정음"],
        ),
        ("검색어: 남산타워 높이", ["남산타워 높이"]),
        ("Q1: 무엇인가?\nQ1: 무엇인가?", ["무엇인가?"]),
        ('[{"query": "객체 안의 질문"}, 3, null]', ["객체 안의 질문"]),
        ("", []),
        ("   \n  - \n", []),
    ],
)
def test_parse_queries_handles_messy_llm_output(raw, expected):
    from korag.synth.queries import parse_queries

    assert parse_queries(raw) == expected


# -- LLM-free generators ----------------------------------------------------------------------
def test_inverse_cloze_removes_the_query_sentence(sample):
    from korag.synth.queries import ict_queries

    s = ict_queries(sample.corpus, splitter="regex")
    assert len(s) > 40
    for q in s.queries:
        doc = sample.corpus.get(q.doc_id).text
        assert q.text in doc and q.text not in q.positive
        assert len(q.positive) < len(doc)
    pairs = s.to_training_pairs()
    assert pairs[0].positive.startswith(sample.corpus.get(s.queries[0].doc_id).title)
    assert s.queries[0].text not in pairs[0].positive


def test_keyphrase_queries_are_distinctive_nouns_of_the_passage(sample):
    from korag.synth.queries import keyphrase_queries

    s = keyphrase_queries(sample.corpus, terms=3)
    assert len(s) == len(sample.corpus)
    for q in s.queries:
        words = q.text.split()
        assert 1 <= len(words) <= 3
        assert all(w in sample.corpus.get(q.doc_id).text for w in words)


# -- filters ----------------------------------------------------------------------------------
def _set(corpus: Corpus, items: list[tuple[str, str, str]], logprobs=None) -> SyntheticSet:
    qs = [
        SyntheticQuery(f"q{i}", text, doc, method, logprob=(logprobs[i] if logprobs else None))
        for i, (text, doc, method) in enumerate(items)
    ]
    return SyntheticSet(corpus, qs)


def test_each_filter_drops_what_it_should(sample):
    from korag.synth.filters import FilterConfig, apply_filters

    c = sample.corpus
    d0, d1 = c.ids[0], c.ids[1]
    title0 = c.get(d0).title
    copied = c.get(d0).text[:60]
    items = [
        ("좋은 질문은 무엇인가?", d0, "llm-question"),  # kept by all
        ("짧", d0, "llm-question"),  # length
        ("좋은 질문은 무엇인가", d0, "llm-question"),  # duplicate after normalisation
        ("좋은 질문은 무엇인가요?", d0, "llm-question"),  # near duplicate of the same document
        (copied, d0, "llm-question"),  # copy of the passage
        (c.get(d1).text[:60], d1, "ict"),  # ICT copies by design: exempt from the copy filter
        (title0, d0, "llm-keyword"),  # the title alone is a copy too
        ("What is the capital city?", d1, "llm-question"),  # language
    ]
    s = _set(c, items)
    only = lambda name, **kw: apply_filters(s, FilterConfig(enabled=[name], **kw))[1].dropped[name]  # noqa: E731
    assert only("length") == {"llm-question": 1}
    assert only("dedup") == {"llm-question": 2}
    assert only("copy") == {"llm-question": 1, "llm-keyword": 1}
    assert only("language") == {"llm-question": 1}
    kept, report = apply_filters(s, FilterConfig(enabled=["length", "dedup", "copy", "language"]))
    assert [q.text for q in kept.queries] == ["좋은 질문은 무엇인가?", c.get(d1).text[:60]]
    assert report.rows()[-1][1] == {"llm-question": 1, "llm-keyword": 0, "ict": 1}


def test_logprob_filter_keeps_the_most_probable_per_method(sample):
    from korag.synth.filters import FilterConfig, apply_filters

    d = sample.corpus.ids[0]
    items = [(f"질문 {i}번", d, "llm-question") for i in range(10)] + [
        ("키워드 하나", d, "llm-keyword"),
        ("ict 문장", d, "ict"),
    ]
    lps = [-float(i) for i in range(10)] + [-50.0, None]
    kept, _ = apply_filters(_set(sample.corpus, items, lps), FilterConfig(enabled=["logprob"], logprob_keep=0.5))
    texts = [q.text for q in kept.queries]
    assert texts[:5] == [f"질문 {i}번" for i in range(5)]
    # a method's only query is its own top half; unscored queries pass
    assert "키워드 하나" in texts and "ict 문장" in texts and len(texts) == 7


def test_roundtrip_filter_keeps_queries_that_find_their_passage(sample):
    from korag.retrieval.bm25 import BM25Retriever
    from korag.synth.filters import FilterConfig, apply_filters

    ex = sample.examples[0]
    other = next(d for d in sample.corpus.ids if d not in ex.doc_ids)
    items = [(ex.question, ex.doc_ids[0], "llm-question"), (ex.question, other, "llm-question")]
    s = SyntheticSet(sample.corpus, [SyntheticQuery(f"q{i}", t, d, m) for i, (t, d, m) in enumerate(items)])
    bm25 = BM25Retriever("bigram-stem")
    bm25.index(sample.corpus)
    kept, report = apply_filters(s, FilterConfig(enabled=["roundtrip"], roundtrip_k=1), retriever=bm25)
    assert [q.doc_id for q in kept.queries] == [ex.doc_ids[0]]
    assert report.dropped["roundtrip"] == {"llm-question": 1}
    with pytest.raises(ConfigError, match="retriever"):
        apply_filters(s, FilterConfig(enabled=["roundtrip"]))
    with pytest.raises(ConfigError, match="unknown filter"):
        FilterConfig(enabled=["magic"])


# -- hard negatives ---------------------------------------------------------------------------
def test_negative_miner_false_negative_guard(sample):
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.negatives import mine_negatives

    rs = sample.to_retrieval_set()
    bm25 = BM25Retriever("bigram-stem")
    bm25.index(sample.corpus)
    answers = {e.id: e.answers for e in sample.examples}
    plain, _ = mine_negatives(rs, bm25, num=3, rank_range=(0, 20), max_score_ratio=None)
    guarded, rep = mine_negatives(rs, bm25, num=3, rank_range=(0, 20), max_score_ratio=None, answers=answers)
    for qid, negs in guarded.items():
        assert not set(negs) & rs.qrels.relevant(qid).keys()
        assert not any(a in sample.corpus.get(d).text for d in negs for a in answers[qid])
    assert rep.dropped_relevant > 0 and rep.dropped_answer > 0
    # the answer guard really changed the choice somewhere
    assert any(plain[q] != guarded[q] for q in plain)
    tight, rep2 = mine_negatives(rs, bm25, num=3, rank_range=(0, 20), max_score_ratio=0.5)
    assert rep2.dropped_margin > 0
    ranking = dict(bm25.search(rs.judged_queries(), k=20).items())
    for qid, negs in tight.items():
        pos = max(s for d, s in ranking[qid] if d in rs.qrels.relevant(qid))
        scores = dict(ranking[qid])  # a document BM25 does not return shares no term: it scores 0
        assert all(scores.get(d, 0.0) <= 0.5 * pos for d in negs)


def test_negative_miner_interleaves_several_retrievers(sample):
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.negatives import mine_negatives

    rs = sample.to_retrieval_set()
    a, b = BM25Retriever("bigram-stem"), BM25Retriever("whitespace")
    a.index(sample.corpus)
    b.index(sample.corpus)
    both, _ = mine_negatives(rs, [a, b], num=2, max_score_ratio=None, rank_range=(0, 10))
    top_a = dict(a.search(rs.judged_queries(), k=10).items())
    top_b = dict(b.search(rs.judged_queries(), k=10).items())
    from_b_only = 0
    for q, negs in both.items():
        window_a, window_b = {d for d, _ in top_a[q]}, {d for d, _ in top_b[q]}
        assert len(negs) == 2 and set(negs) <= window_a | window_b
        assert not set(negs) & rs.qrels.relevant(q).keys()
        from_b_only += sum(d not in window_a for d in negs)
    assert from_b_only > 0  # the second retriever contributes candidates the first never ranked


# -- resumable generation ---------------------------------------------------------------------
class _Scripted(GeneratorBase):
    """A deterministic generator that records which prompts it saw and can fail on a call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.seen: list[str] = []
        self.fail_on_call = fail_on_call

    def describe(self):
        return {"backend": "scripted"}

    def generate(self, prompts, config):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise KeyboardInterrupt
        self.seen += prompts
        return [f" 질문 {len(p)}번은 무엇인가?\n" for p in prompts]


def test_interrupted_generation_resumes_where_it_stopped(sample, tmp_path):
    from korag.synth.prompts import QueryPrompt
    from korag.synth.queries import generate_llm_queries

    corpus, prompt, cfg = sample.corpus, QueryPrompt("question"), GenerationConfig(max_tokens=8)
    progress = tmp_path / "raw.jsonl"
    first = _Scripted(fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        generate_llm_queries(corpus, first, prompt, cfg, progress_file=progress, docs_per_call=10, show_progress=False)
    assert len(progress.read_text().splitlines()) == 20  # two finished calls of 10 documents
    with progress.open("a") as fh:  # a crash in the middle of writing a line
        fh.write('{"doc_id": "p0')
    second = _Scripted()
    resumed, counts = generate_llm_queries(
        corpus, second, prompt, cfg, progress_file=progress, docs_per_call=10, show_progress=False
    )
    assert len(second.seen) == len(corpus) - 20  # only the unfinished documents
    fresh, _ = generate_llm_queries(corpus, _Scripted(), prompt, cfg, docs_per_call=10, show_progress=False)
    assert [(q.doc_id, q.text) for q in resumed.queries] == [(q.doc_id, q.text) for q in fresh.queries]
    assert counts["generations"] == len(corpus) and counts["empty"] == 0


def test_synthetic_jsonl_round_trip_and_errors(sample, tmp_path):
    d = sample.corpus.ids[0]
    s = SyntheticSet(sample.corpus, [SyntheticQuery("a", "질문?", d, "llm-question", logprob=-1.5, meta={"raw": "x"})])
    s.save_jsonl(tmp_path / "s.jsonl")
    back = SyntheticSet.read_jsonl(tmp_path / "s.jsonl", sample.corpus)
    assert back.queries == s.queries
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "a", "text": "q", "doc_id": "nope", "method": "ict"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl: query 1 \(id='a'\): field 'doc_id': unknown document"):
        SyntheticSet.read_jsonl(tmp_path / "bad.jsonl", sample.corpus)
    (tmp_path / "bad2.jsonl").write_text(
        json.dumps({"id": "a", "text": "q", "doc_id": d, "method": "ict", "logprob": "x"}) + "\n"
    )
    with pytest.raises(DataError, match="line 1: field 'logprob'"):
        SyntheticSet.read_jsonl(tmp_path / "bad2.jsonl", sample.corpus)


# -- the enhancement flow ---------------------------------------------------------------------
def _enhance(tiny_lm, tiny_encoder, *extra: str) -> list[str]:
    return [
        "data.path=builtin:sample",
        "data.format=auto",
        "split.group_by=topic",
        f"llm.model={tiny_lm}",
        "llm.batch_size=16",
        "generate.question.max_tokens=4",
        "generate.keyword.max_tokens=4",
        f"train.base={tiny_encoder}",
        "train.max_steps=1",
        "train.batch_size=4",
        *extra,
    ]


def test_changing_the_prompt_reruns_generation_and_after_only(tiny_lm, tiny_encoder, tmp_path):
    from korag.pipeline.job import prepare, run_job
    from korag.pipeline.runner import plan_keys

    base = _enhance(tiny_lm, tiny_encoder)
    changed = [*base, "generate.question.shots=1"]
    _, t1 = prepare("korquad-enhance", base)
    _, t2 = prepare("korquad-enhance", changed)
    k1, k2 = plan_keys(t1), plan_keys(t2)
    differ = {t for t in k1 if k1[t] != k2[t]}
    synthetic_runs = {"v2-human+synthetic", "label-free", "label-free-unfiltered"}
    assert differ == (
        {"generate/question", "filter/filtered", "filter/no-roundtrip", "filter/unfiltered", "report"}
        | {f"train/{r}" for r in synthetic_runs}
        | {f"dense-eval/{r}" for r in synthetic_runs}
    )
    # and really: the second run executes exactly those tasks (a smaller recipe, same flow)
    import yaml

    from korag.pipeline.recipe import builtin_recipes

    raw = yaml.safe_load(builtin_recipes()["korquad-enhance"].read_text(encoding="utf-8"))
    raw["runs"] = {"v1-human": raw["runs"]["v1-human"], "label-free": raw["runs"]["label-free"]}
    del raw["filters"]["no-roundtrip"]
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    ws = tmp_path / "ws"
    first = run_job(str(small), workspace=ws, overrides=base, show_progress=False)
    text = (first.report_dir / "report.md").read_text(encoding="utf-8")
    assert "| label-free |" in text and "after roundtrip" in text and (first.report_dir / "filters.png").is_file()
    second = run_job(str(small), workspace=ws, overrides=changed, show_progress=False)
    assert set(second.executed) == {
        "generate/question",
        "filter/filtered",
        "filter/unfiltered",
        "train/label-free",
        "dense-eval/label-free",
        "report",
    }


# -- command line -----------------------------------------------------------------------------
def test_cli_synth_queries_writes_queries_and_triplets(tmp_path, tiny_lm):
    from conftest import run_cli

    out, pairs, progress = tmp_path / "q.jsonl", tmp_path / "pairs.jsonl", tmp_path / "raw.jsonl"
    r = run_cli(
        "synth",
        "queries",
        "builtin:sample",
        "-o",
        str(out),
        "--pairs",
        str(pairs),
        "--negatives",
        "1",
        "--llm",
        str(tiny_lm),
        "--styles",
        "keyword",
        "--max-tokens",
        "3",
        "--progress",
        str(progress),
    )
    assert r.returncode == 0, r.stderr
    assert "after roundtrip" in r.stdout and "llm-keyword" in r.stdout
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert {q["method"] for q in kept} >= {"ict", "keyphrase"}
    triplets = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(triplets) == len(kept) and all(len(t["negatives"]) == 1 for t in triplets)
    assert all(t["negative_ids"][0] != t["positive_id"] for t in triplets)
    assert (tmp_path / "raw.keyword.jsonl").is_file()  # the resumable per-style progress file
    bad = run_cli("synth", "queries", "builtin:sample", "-o", str(out), "--no-ict", "--no-keyphrase")
    assert bad.returncode == 2 and "nothing to generate" in bad.stderr


def test_cli_lexicon_and_expanded_evaluation(tmp_path):
    from conftest import run_cli

    syn, idf = tmp_path / "syn.json", tmp_path / "idf.json"
    r = run_cli("lexicon", "synonyms", "builtin:sample", "-o", str(syn))
    assert r.returncode == 0, r.stderr
    entries = json.loads(syn.read_text())
    assert any(e["korean"] == "벨 연구소" and e["english"] == "Bell Labs" for e in entries["entries"])
    r = run_cli("lexicon", "idf", "builtin:sample", "-o", str(idf), "--keyword", "광합성", "--boost", "3")
    assert r.returncode == 0, r.stderr
    plain = tmp_path / "plain.json"
    run_cli("lexicon", "idf", "builtin:sample", "-o", str(plain))
    boosted, base = json.loads(idf.read_text()), json.loads(plain.read_text())
    assert boosted["광합"] == pytest.approx(3 * base["광합"], rel=1e-5)
    assert boosted["서울"] == pytest.approx(base["서울"], rel=1e-6)
    r = run_cli("lexicon", "trends", "builtin:sample")
    assert r.returncode == 2 and "--background" in r.stderr
    beir = tmp_path / "beir"
    assert run_cli("data", "convert", "builtin:sample", "-o", str(beir)).returncode == 0
    r = run_cli("eval", "retrieval", str(beir), "--synonyms", str(syn), "-o", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["mrr@10"] > 0.9


def test_queries_help_does_not_promise_an_llm_it_does_not_use():
    """Unset, `synth queries --llm` means LLM-free queries only: its help must not show the
    LLM settings' default model as if it were used."""
    from conftest import run_cli

    r = run_cli("synth", "queries", "--help")
    assert r.returncode == 0
    start = r.stdout.index("  --llm ")  # the option's line, not the description's mention
    llm_help = r.stdout[start : r.stdout.index("--styles", start)]
    assert "LLM-free queries only" in " ".join(llm_help.split())
    assert "[default:" not in llm_help
