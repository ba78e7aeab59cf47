"""Cross-encoder reranker: training on a toy set with a planted signal (tiny config-built encoder,
seconds), `RerankingRetriever`'s contract, LoRA with a trained head, resumption, and the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from korag.data.beir import write_beir
from korag.data.sample import load_sample
from korag.data.schema import Corpus, Qrels, Queries, RetrievalSet
from korag.errors import ConfigError, ModelError
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.rerank import CrossEncoderReranker, RerankingRetriever, is_trained_reranker
from korag.training.config import RerankerTrainConfig
from korag.training.reranker import check_config, train_reranker

TOPICS = 40
HELD_OUT = range(30, 40)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on 2 shared cores: one thread avoids OpenMP spinning against other processes
    (3× faster here), and restores the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_set() -> RetrievalSet:
    """Per topic (a title of the sample set) an answer passage carrying a planted marker ("정답 표지")
    and a distractor repeating the topic: BM25 ranks the distractor first for the query "<topic>
    무엇인가", a reranker that learned the marker ranks the answer first."""
    titles = [d.title for d in load_sample().corpus][:TOPICS]
    ids, texts, qids, qtexts, qrels = [], [], [], [], {}
    for i, t in enumerate(titles):
        ids += [f"a{i}", f"d{i}"]
        texts += [f"{t} 정답 표지 설명 문서", f"{t} {t} {t} 잡담"]
        qids.append(f"q{i}")
        qtexts.append(f"{t} 무엇인가")
        qrels[f"q{i}"] = {f"a{i}": 1}
    return RetrievalSet(Corpus(ids, texts), Queries(qids, qtexts), Qrels(qrels), name="toy")


def split(rs: RetrievalSet) -> tuple[RetrievalSet, RetrievalSet]:
    held = [f"q{i}" for i in HELD_OUT]
    train = [q for q in rs.queries.ids if q not in held]
    return (
        RetrievalSet(rs.corpus, rs.queries.subset(train), rs.qrels.restrict(train), name="toy"),
        RetrievalSet(rs.corpus, rs.queries.subset(held), rs.qrels.restrict(held), name="toy-dev"),
    )


def config(base: Path, **kw) -> RerankerTrainConfig:
    settings = {
        "base": str(base),
        "max_steps": 30,
        "batch_size": 8,
        "learning_rate": 5e-3,
        "eval_steps": 15,
        "logging_steps": 5,
        "hard_negatives": 1,
        "negative_ranks": (0, 5),  # the distractor is BM25's first: the hardest negative
        **kw,
    }
    return RerankerTrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    rs = toy_set()
    train, dev = split(rs)
    out = tmp_path_factory.mktemp("reranker") / "run"
    result = train_reranker(train, config(tiny_encoder), out, dev=dev, show_progress=False)
    return rs, dev, result


def test_reranker_lifts_the_planted_positive(trained):
    rs, dev, result = trained
    bm25 = BM25Retriever()
    bm25.index(rs.corpus)
    reranked = RerankingRetriever(bm25, CrossEncoderReranker(result.model_dir), rerank_k=10)
    first, second = bm25.search(dev.queries, k=5), reranked.search(dev.queries, k=5)
    for i, q in enumerate(dev.queries):
        positive = next(iter(dev.qrels.relevant(q.id)))
        assert [d for d, _ in first.row(i)].index(positive) > 0  # BM25 puts it lower
        assert second.row(i)[0][0] == positive  # the reranker puts it first
    # training selected on held-out reranking metrics, BM25's beside them
    assert result.metrics["mrr@10"] == 1.0 and result.metrics["base_mrr@10"] <= 0.5
    assert result.best_checkpoint and result.global_step == 30
    info = json.loads((result.output / "training.json").read_text())
    assert info["config"]["loss"] == "listwise" and info["extra"]["pairs_per_query"] == 1 + 1 + 4
    assert is_trained_reranker(result.model_dir) and any((result.output / "tensorboard").iterdir())


def test_reranking_retriever_contract(trained, tiny_encoder):
    import torch
    from sentence_transformers import CrossEncoder

    rs, _, result = trained
    bm25 = BM25Retriever()
    bm25.index(rs.corpus)
    reranker = CrossEncoderReranker(result.model_dir, precision="fp32", batch_size=7)
    rr = RerankingRetriever(bm25, reranker, rerank_k=4)
    # "정답 표지 잡담" matches every passage; a topic's query its two passages; nonsense none
    queries = ["정답 표지 잡담", rs.queries.texts[0], "ㅋㅋㅋ"]
    base, out = bm25.search(queries, k=10), rr.search(queries, k=10)
    assert len(out.row(0)) == 10  # exactly k
    top, rest = [d for d, _ in out.row(0)[:4]], [d for d, _ in out.row(0)[4:]]
    assert sorted(top) == sorted(d for d, _ in base.row(0)[:4])  # only the top rerank_k reordered …
    assert rest == [d for d, _ in base.row(0)[4:10]]  # … the rest keep the base's order
    scores = [s for _, s in out.row(0)]
    assert scores == sorted(scores, reverse=True)
    assert 0 < len(out.row(1)) == len(base.row(1)) < 10 and out.row(2) == []  # fewer candidates
    # the scores are the cross-encoder's logits for (query, title + text)
    contents = dict(zip(rs.corpus.ids, rs.corpus.contents(True), strict=True))
    ce = CrossEncoder(str(result.model_dir))
    expected = ce.predict([[queries[0], contents[d]] for d in top], activation_fn=torch.nn.Identity())
    np.testing.assert_allclose([s for _, s in out.row(0)[:4]], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reranker.score(queries[0], [contents[d] for d in top]), expected, atol=1e-5)
    assert reranker.score("q", []).shape == (0,)
    # bfloat16 (where the CPU has it) ranks the same
    auto = RerankingRetriever(bm25, CrossEncoderReranker(result.model_dir), rerank_k=4).search(queries, k=10)
    np.testing.assert_allclose(auto.scores[0, :4], out.scores[0, :4], atol=0.05)
    assert rr.timings["rerank_pairs"] == 4 + len(base.row(1)) and rr.timings["rerank_ms_per_query"] > 0
    assert rr.describe()["type"] == "rerank" and rr.settings()["base"]["type"] == "bm25"
    assert "rerank" in rr.label() and rr.corpus() is rs.corpus
    with pytest.raises(ConfigError, match="not saved"):
        rr.save(result.output / "nope")
    with pytest.raises(ModelError, match="not a reranker"):
        CrossEncoderReranker(tiny_encoder)  # a bi-encoder: its head would be random
    with pytest.raises(ConfigError, match="passages' text"):
        RerankingRetriever(_NoCorpus(bm25), reranker).search(["x"])


def test_blend_mixes_the_first_stage_back_and_is_tuned_on_judged_questions(trained):
    """blend 0 is the cross-encoder's order, 1 the base's; tuning keeps the cross-encoder where it
    is right and falls back to the base where it is wrong (the same model, opposite judgements)."""
    rs, dev, result = trained
    bm25 = BM25Retriever()
    bm25.index(rs.corpus)
    rr = RerankingRetriever(bm25, CrossEncoderReranker(result.model_dir), rerank_k=4)
    base = bm25.search(dev.queries, k=4)
    got = rr.candidates(dev.queries, k=4)
    assert rr.timings["rerank_pairs"] == sum(len(h) for h in got.heads)
    for i, q in enumerate(dev.queries):
        positive = next(iter(dev.qrels.relevant(q.id)))
        assert got.ranking(4, 0.0).row(i)[0][0] == positive
        assert [d for d, _ in got.ranking(4, 1.0).row(i)] == [d for d, _ in base.row(i)]
    assert rr.tune_blend(dev)["blend"] < 0.5 and rr.blend < 0.5
    assert rr.search(dev.queries, k=1).row(0)[0][0] == next(iter(dev.qrels.relevant(dev.queries.ids[0])))
    # judged the other way (the distractor is what is wanted): the base is right, the blend follows
    flipped = Qrels({q: {"d" + next(iter(dev.qrels.relevant(q)))[1:]: 1} for q in dev.queries.ids})
    tuned = rr.tune_blend(RetrievalSet(rs.corpus, dev.queries, flipped, name="flipped"))
    assert tuned["blend"] >= 0.5 and tuned["trials"][tuned["blend"]] > tuned["trials"][0.0]
    assert rr.settings()["blend"] == tuned["blend"]
    with pytest.raises(ConfigError, match="blend"):
        RerankingRetriever(bm25, rr.reranker, blend=1.5)


def test_windows_show_the_part_of_a_long_passage_that_shares_the_query(tiny_encoder):
    from transformers import AutoTokenizer

    from korag.retrieval.rerank import PassageWindows

    tok = AutoTokenizer.from_pretrained(str(tiny_encoder))
    filler = " ".join(["정조"] * 120)
    passage = f"제목 {filler} 화성 건설 표지 {filler}"
    window = PassageWindows(tok, 48)
    got = window("화성 건설은 언제", passage)
    query_tokens = len(tok("화성 건설은 언제", add_special_tokens=False)["input_ids"])
    assert "화성 건설" in got and got in passage  # the evidence, a piece of the passage itself …
    special = tok.num_special_tokens_to_add(pair=True)
    assert len(tok(got, add_special_tokens=False)["input_ids"]) + query_tokens + special <= 48  # … that fits
    assert not passage.startswith(got) and window("무관한 질문", passage).startswith("제목")  # no overlap: first
    assert window("화성", "짧은 글") == "짧은 글"  # fits: whole
    assert PassageWindows(tok, 8)("화성 건설은 언제", passage) == passage  # no room: truncation decides


class _NoCorpus:
    """A retriever that does not know its passages (an index saved without them)."""

    def __init__(self, inner):
        self.inner, self.timings = inner, {}

    def search(self, queries, k=10, *, show_progress=False):
        return self.inner.search(queries, k)

    def corpus(self):
        return None

    def describe(self):
        return {"type": "x", "name": "x"}


def test_lora_trains_the_head_and_resumes(tiny_encoder, tmp_path):
    import torch
    from safetensors.torch import load_file
    from sentence_transformers import CrossEncoder

    from korag.retrieval.rerank import load_cross_encoder

    rs = toy_set()
    cfg = config(tiny_encoder, lora={"r": 4, "dropout": 0.0}, max_steps=6, eval_steps=3, learning_rate=1e-2)
    first = train_reranker(rs, cfg, tmp_path / "o", show_progress=False)
    assert (first.adapter_dir / "adapter_config.json").is_file()
    adapter = load_file(str(first.adapter_dir / "adapter_model.safetensors"))
    assert any("classifier" in k for k in adapter) and any("pooler" in k for k in adapter)  # the head is saved whole
    merged = load_file(str(first.model_dir / "model.safetensors"))
    assert not any("lora" in k or "modules_to_save" in k for k in merged)  # a plain cross-encoder
    base_head = load_cross_encoder(tiny_encoder, new_head=True)[0].auto_model.classifier.weight.detach()
    assert (merged["classifier.weight"] - base_head).abs().max() > 1e-3  # the head was trained
    pairs = [["세종대왕 무엇인가", "세종대왕 정답 표지 설명 문서"], ["세종대왕 무엇인가", "세종대왕 세종대왕 잡담"]]
    identity = torch.nn.Identity()
    np.testing.assert_allclose(
        CrossEncoder(str(first.model_dir)).predict(pairs, activation_fn=identity),
        CrossEncoder(str(first.adapter_dir)).predict(pairs, activation_fn=identity),
        atol=1e-4,
    )
    # an interrupted run continues from its last checkpoint (adapter and head restored)
    shutil.rmtree(tmp_path / "o" / "checkpoints" / "checkpoint-6")
    shutil.rmtree(first.model_dir)
    again = train_reranker(rs, cfg, tmp_path / "o", show_progress=False)
    assert again.resumed_from == "checkpoint-3" and again.global_step == 6
    np.testing.assert_allclose(
        CrossEncoder(str(again.model_dir)).predict(pairs, activation_fn=identity),
        CrossEncoder(str(first.adapter_dir)).predict(pairs, activation_fn=identity),
        atol=1e-3,
    )


def test_full_training_resumes(tiny_encoder, tmp_path):
    rs = toy_set()
    cfg = config(tiny_encoder, max_steps=4, eval_steps=2, logging_steps=1, loss="bce", eval_fraction=0.25)
    train_reranker(rs, cfg, tmp_path / "o", show_progress=False)
    shutil.rmtree(tmp_path / "o" / "checkpoints" / "checkpoint-4")
    result = train_reranker(rs, cfg, tmp_path / "o", show_progress=False)
    assert result.resumed_from == "checkpoint-2" and result.global_step == 4
    state = json.loads((tmp_path / "o" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h][-1] == 4
    with pytest.raises(ConfigError, match="different settings"):
        train_reranker(rs, cfg.model_copy(update={"loss": "listwise"}), tmp_path / "o", show_progress=False)


def test_both_miners_and_bad_settings(tiny_encoder):
    from korag.training.reranker import _prepare

    rs = toy_set()
    cfg = config(tiny_encoder, negatives_from="both", hard_negatives=2, negative_ranks=(0, 10), eval_fraction=0.2)
    data = _prepare(rs, cfg, None, show_progress=False)
    assert data.pairs and all(len(p.negatives) == 2 for p in data.pairs) and len(data.dev.queries) == 8
    assert all(p.positive_id not in p.negative_ids for p in data.pairs)
    for bad, match in (
        ({"loss": "bce", "hard_negatives": 0}, "bce loss needs negatives"),
        ({"hard_negatives": 0, "in_batch_negatives": 0}, "listwise loss needs negatives"),
        ({"pos_weight": 2.0}, "pos_weight applies"),
    ):
        with pytest.raises(ConfigError, match=match):
            check_config(config(tiny_encoder, **bad))


def test_cli_train_eval_and_search(tiny_encoder, tmp_path):
    rs = toy_set()
    train, dev = split(rs)
    data = write_beir(rs, tmp_path / "toy", splits={"train": train.qrels, "test": dev.qrels})
    out = tmp_path / "run"
    args = ["train", "reranker", str(data), "--base", str(tiny_encoder), "-o", str(out), "--max-steps", "4"]
    args += ["--batch-size", "8", "--hard-negatives", "1", "--set", "eval_steps=2", "--set", "negative_ranks=[0,5]"]
    shown = run_cli(*args, "--show-config")
    assert shown.returncode == 0 and "rerank_depth: 30" in shown.stdout and "loss: listwise" in shown.stdout
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "reranker training (listwise)" in res.stdout and "base_mrr@10" in res.stdout
    assert (out / "model" / "config_sentence_transformers.json").is_file() and (out / "training.json").is_file()
    res = run_cli(
        "eval", "retrieval", str(data), "--rerank", str(out / "model"), "--rerank-k", "5", "--k", "10",
        "--output", str(tmp_path / "e.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rerank_ms_per_query" in res.stdout
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["retriever"]["type"] == "rerank" and evaluated["retriever"]["rerank_k"] == 5
    assert evaluated["timings"]["rerank_ms_per_query"] > 0 and evaluated["num_queries"] == len(HELD_OUT)
    # a training output directory works as --rerank too; a bi-encoder is refused before any work
    assert run_cli("index", str(data), "-o", str(tmp_path / "idx")).returncode == 0
    res = run_cli("search", str(tmp_path / "idx"), "정조 무엇인가", "--rerank", str(out), "--rerank-k", "5", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    hits = json.loads(res.stdout)[0]["results"]
    assert hits and hits[0]["text"]
    bad = run_cli("eval", "retrieval", str(data), "--rerank", str(tiny_encoder))
    assert bad.returncode == 2 and "not a reranker" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("eval", "retrieval", str(data), "--rerank", str(out), "--rerank-k", "0")
    assert bad.returncode == 2 and "--rerank-k" in bad.stderr
    # the blend is chosen on a judged split, or given; --tune-split alone needs something to tune
    res = run_cli(
        "eval", "retrieval", str(data), "--rerank", str(out), "--rerank-k", "5", "--tune-split", "train",
        "--output", str(tmp_path / "t.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "rerank blend" in res.stdout and "chosen on 'train'" in res.stdout
    tuned = json.loads((tmp_path / "t.json").read_text())
    assert tuned["retriever"]["blend"] == tuned["tuning"]["rerank_blend"]["blend"]
    bad = run_cli("eval", "retrieval", str(data), "--tune-split", "train")
    assert bad.returncode == 2 and "--tune-split" in bad.stderr
    res = run_cli(
        "search", str(tmp_path / "idx"), "정조 무엇인가", "--rerank", str(out), "--rerank-blend", "1", "--json"
    )
    plain = run_cli("search", str(tmp_path / "idx"), "정조 무엇인가", "--json")
    assert res.returncode == 0 and [h["id"] for h in json.loads(res.stdout)[0]["results"]] == [
        h["id"] for h in json.loads(plain.stdout)[0]["results"]
    ]


def test_collection_search_and_ask_rerank(trained, tmp_path):
    """A collection reranks with its own cross-encoder by default, with another per call, or not."""
    from korag.collections.config import CollectionConfig, RerankSettings
    from korag.collections.store import Collection
    from korag.data.schema import Document

    rs, dev, result = trained
    docs = [Document(d.id, d.text, title=d.id) for d in rs.corpus]
    plain = Collection.create(tmp_path / "plain", CollectionConfig(name="plain", chunk={"max_tokens": 64}))
    plain.add_texts(docs)
    ranked = Collection.create(
        tmp_path / "ranked",
        CollectionConfig(name="ranked", chunk={"max_tokens": 64}, rerank=RerankSettings(model=str(result.output), k=5)),
    )
    ranked.add_texts(docs)
    for q in dev.queries:
        positive = next(iter(dev.qrels.relevant(q.id)))
        assert plain.search(q.text, 3)[0].meta["document"] != positive  # BM25 alone: the distractor first
        assert ranked.search(q.text, 3)[0].meta["document"] == positive  # the collection's reranker
        assert ranked.search(q.text, 3, rerank=False)[0].meta["document"] != positive
        per_call = RerankSettings(model=str(result.model_dir), k=5)
        assert plain.search(q.text, 3, rerank=per_call)[0].meta["document"] == positive
    with pytest.raises(ConfigError, match="has no reranker"):
        plain.search("정조", 3, rerank=True)


def test_training_reads_every_passage_through_its_window(tiny_encoder):
    """Positives and hard negatives (listwise and BCE alike) are what the window shows beside
    their own query; queries stay whole."""
    from korag.data.training import TrainingPair
    from korag.retrieval.rerank import load_cross_encoder
    from korag.training.fit import PreparedPairs
    from korag.training.reranker import _loss

    rs = toy_set()
    pairs = [TrainingPair("q1", "p1", ("n1", "m1")), TrainingPair("q2", "p2", ("n2", "m2"))]
    data = PreparedPairs(rs, rs, pairs)
    model = load_cross_encoder(tiny_encoder, new_head=True)

    def window(q, p):
        return f"{p}|{q}"

    _, columns = _loss(model, data, config(tiny_encoder, hard_negatives=2), window)
    assert columns["anchor"] == ["q1", "q2"] and columns["positive"] == ["p1|q1", "p2|q2"]
    assert columns["negative_2"] == ["m1|q1", "m2|q2"]
    _, rows = _loss(model, data, config(tiny_encoder, hard_negatives=2, loss="bce"), window)
    assert rows["passage"][:3] == ["p1|q1", "n1|q1", "m1|q1"] and rows["label"][:3] == [1.0, 0.0, 0.0]
