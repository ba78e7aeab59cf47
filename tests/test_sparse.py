"""Learned sparse retrieval: IDF, pruning, inverted index, head, training (both modes), export, CLI."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import run_cli
from korag.data.sample import load_sample
from korag.errors import ConfigError, DataError, ModelError
from korag.retrieval.inverted_index import InvertedIndex
from korag.retrieval.pruning import prune
from korag.text.idf import bm25_idf, corpus_idf, read_idf_json, write_idf_json


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_encoder))


def test_idf_follows_the_opensearch_formula_and_round_trips(tokenizer, tmp_path):
    texts = ["서울 부산", "서울 대구", "광주"]
    weights, df = corpus_idf(tokenizer, texts)
    seoul = tokenizer("서울", add_special_tokens=False)["input_ids"]
    assert all(df[i] == 2 for i in seoul)
    assert np.allclose(weights[seoul], np.log(1 + (3 - 2 + 0.5) / (2 + 0.5)))
    assert weights[tokenizer.cls_token_id] == 0 and weights.max() == pytest.approx(bm25_idf(np.array([0]), 3)[0])
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(weights))))
    write_idf_json(tmp_path / "idf.json", weights, pieces)
    back = read_idf_json(tmp_path / "idf.json", tokenizer)
    np.testing.assert_allclose(back, weights, rtol=1e-6)


def test_idf_errors_name_the_problem(tokenizer, tmp_path):
    with pytest.raises(DataError, match="empty corpus"):
        corpus_idf(tokenizer, [])
    (tmp_path / "idf.json").write_text(json.dumps({"서울": 1.0, "no-such-piece-xyz": 2.0}), encoding="utf-8")
    with pytest.raises(DataError, match=r"idf.json.*not in the model's tokenizer.*no-such-piece-xyz"):
        read_idf_json(tmp_path / "idf.json", tokenizer)
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        read_idf_json(tmp_path / "bad.json", tokenizer)


def test_pruning_follows_opensearch_rules():
    # neural-search's own test vector: a=10, b=6, c=3, d=1
    m = sp.csr_matrix(np.array([[10.0, 6.0, 3.0, 1.0], [0.0, 0.0, 2.0, 2.0]], dtype=np.float32))

    def kept(kind, r):
        return [sorted(np.nonzero(row)[0].tolist()) for row in prune(m, kind, r).toarray()]

    assert kept("alpha_mass", 0.8) == [[0, 1], [2]]
    assert kept("top_k", 2) == [[0, 1], [2, 3]]
    assert kept("max_ratio", 0.5) == [[0, 1], [2, 3]]
    assert kept("abs_value", 3) == [[0, 1, 2], []]
    assert kept("none", None) == [[0, 1, 2, 3], [2, 3]]
    for kind, r in (("top_k", 1.5), ("max_ratio", 1.0), ("alpha_mass", -0.1), ("abs_value", -1), ("bogus", 1)):
        with pytest.raises(ConfigError):
            prune(m, kind, r)


def test_inverted_index_is_exact_and_memory_maps(tmp_path):
    docs = sp.random(300, 500, density=0.02, random_state=1, format="csr", dtype=np.float32)
    queries = sp.random(40, 500, density=0.01, random_state=2, format="csr", dtype=np.float32)
    index = InvertedIndex.from_documents(docs)
    idx, scores = index.search(queries, 5, block=7)
    brute = (queries @ docs.T).toarray()
    np.testing.assert_allclose(scores, -np.sort(-brute, axis=1)[:, :5], rtol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(brute, idx, axis=1), scores, rtol=1e-5)
    index.save(tmp_path)
    loaded = InvertedIndex.load(tmp_path, mmap=True)
    base = loaded.postings.data
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    assert isinstance(base, np.memmap)  # a view of the file, not a copy
    idx2, _ = loaded.search(queries, 5)
    np.testing.assert_array_equal(idx, idx2)


def test_heads_weight_only_what_they_should(tiny_encoder, tokenizer, tmp_path):
    from korag.models.sparse import build_sparse_encoder, load_sparse_encoder, save_sparse_encoder

    texts = ["서울은 수도이다", "부산 광주"]
    weights, df = corpus_idf(tokenizer, texts)
    plain = build_sparse_encoder(str(tiny_encoder), mode="bi-encoder", expansion=False)
    vec = plain.encode_document(texts, convert_to_tensor=True).to_dense().numpy()
    for row, text in zip(vec, texts, strict=True):
        own = set(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert set(np.nonzero(row)[0]) <= own and len(np.nonzero(row)[0]) > 0
    assert (vec[:, tokenizer.all_special_ids] == 0).all()
    allowed = np.nonzero(df)[0]
    expanding = build_sparse_encoder(
        str(tiny_encoder), mode="doc-only", expansion=True, idf=weights, output_ids=allowed
    )
    vec = expanding.encode_document(texts, convert_to_tensor=True).to_dense().numpy()
    assert set(np.nonzero(vec)[1]) <= set(allowed.tolist())
    save_sparse_encoder(expanding, tmp_path / "m")
    again = load_sparse_encoder(tmp_path / "m").encode_document(texts, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(again, vec, atol=1e-6)
    with pytest.raises(ModelError, match="needs IDF"):
        build_sparse_encoder(str(tiny_encoder), mode="doc-only")


def test_a_model_without_tokenizer_is_refused(tiny_encoder, tmp_path):
    from korag.models.sparse import build_sparse_encoder

    broken = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_encoder, broken)
    for f in broken.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.unlink()
    with pytest.raises(ModelError, match="tokenizer"):
        build_sparse_encoder(str(broken), mode="bi-encoder", expansion=False)


def _losses(output: Path) -> list[float]:
    states = sorted((output / "checkpoints").glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    return [h["base_loss"] for h in json.loads(states[-1].read_text())["log_history"] if "base_loss" in h]


@pytest.fixture(scope="module")
def doc_only_model(tiny_encoder, tmp_path_factory):
    from korag.training.config import SparseTrainConfig
    from korag.training.sparse import train_sparse

    out = tmp_path_factory.mktemp("sparse") / "doc-only"
    cfg = SparseTrainConfig(
        base=str(tiny_encoder),
        mode="doc-only",
        max_steps=30,
        batch_size=16,
        learning_rate=1e-3,
        mlm_warmup_steps=10,
        hard_negatives=1,
        eval_steps=15,
        logging_steps=3,
        eval_fraction=0.2,
        seed=1,
    )
    return train_sparse(load_sample(), cfg, out, show_progress=False)


def test_doc_only_training_learns_and_queries_skip_the_transformer(doc_only_model, monkeypatch):
    from korag.eval.ir import evaluate_ranking
    from korag.models.sparse import transformer_model
    from korag.retrieval.sparse import SparseRetriever

    losses = _losses(doc_only_model.output)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    info = json.loads((doc_only_model.output / "training.json").read_text())
    assert info["extra"]["mlm_warmup"]["steps"] == 10 and info["extra"]["output_vocabulary"] > 100
    assert "dot_mrr@10" in doc_only_model.metrics and (doc_only_model.output / "tensorboard").is_dir()

    rs = load_sample().to_retrieval_set()
    retriever = SparseRetriever(doc_only_model.model_dir)
    retriever.index(rs.corpus)
    st_queries = retriever.model.encode_query(rs.queries.texts[:5], convert_to_tensor=True).to_dense().numpy()

    def boom(*a, **k):
        raise AssertionError("the transformer ran for a doc-only query")

    monkeypatch.setattr(transformer_model(retriever.model), "forward", boom)
    ours = retriever.encode_queries(rs.queries.texts[:5]).toarray()
    np.testing.assert_allclose(ours, st_queries, rtol=1e-5, atol=1e-6)
    ranking = retriever.search(rs.queries, k=10)
    assert evaluate_ranking(ranking, rs.qrels, ["mrr@10"]).metrics["mrr@10"] > 0.3
    eff = retriever.efficiency()
    assert eff["query_active_dims"] > 0 and eff["document_active_dims"] > eff["query_active_dims"] and eff["flops"] > 0


def test_sparse_index_saves_and_reloads(doc_only_model, tmp_path):
    from korag.retrieval.base import load_retriever
    from korag.retrieval.sparse import SparseRetriever

    rs = load_sample().to_retrieval_set()
    r = SparseRetriever(doc_only_model.model_dir, prune_type="top_k", prune_ratio=64)
    r.index(rs.corpus)
    assert r.efficiency(rs.queries)["document_active_dims"] <= 64
    before = r.search(rs.queries, k=5)
    r.save(tmp_path / "idx")
    loaded = load_retriever(tmp_path / "idx")
    after = loaded.search(rs.queries, k=5)
    np.testing.assert_array_equal(before.indices, after.indices)
    assert loaded.search_passages(rs.queries.texts[0], k=1)[0].text
    with pytest.raises(DataError, match="empty corpus"):
        r.index(rs.corpus.subset([]))


def test_bi_encoder_without_expansion_trains(tiny_encoder, tmp_path):
    from korag.retrieval.sparse import SparseRetriever
    from korag.training.config import SparseTrainConfig
    from korag.training.sparse import train_sparse

    cfg = SparseTrainConfig(
        base=str(tiny_encoder),
        mode="bi-encoder",
        expansion=False,
        max_steps=30,
        batch_size=16,
        learning_rate=3e-3,
        head_learning_rate=2e-2,
        eval_steps=10,
        logging_steps=2,
        eval_fraction=0.2,
        seed=2,
        distill="margin-mse",
        hard_negatives=1,
        lora=True,
    )
    result = train_sparse(load_sample(), cfg, tmp_path / "bi", show_progress=False)
    losses = _losses(tmp_path / "bi")
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert not list(result.model_dir.rglob("adapter_config.json"))  # merged: a plain model
    r = SparseRetriever(result.model_dir)
    q = r.encode_queries(["서울의 인구는?"]).toarray()[0]
    assert q.any()  # the bi-encoder's queries go through the transformer and head


def test_sparse_config_errors(tiny_encoder, tmp_path):
    from korag.training.config import SparseTrainConfig
    from korag.training.sparse import train_sparse

    with pytest.raises(ConfigError, match="hard negative"):
        train_sparse(load_sample(), SparseTrainConfig(base=str(tiny_encoder), distill="margin-mse"), tmp_path / "x")
    with pytest.raises(ConfigError, match="no query regulariser"):
        train_sparse(load_sample(), SparseTrainConfig(base=str(tiny_encoder), query_regularizer=1e-3), tmp_path / "x")


def test_opensearch_export_reproduces_the_model(doc_only_model, tmp_path):
    import torch

    from korag.export.opensearch import decode_like_opensearch, export_opensearch, opensearch_token
    from korag.models.sparse import document_tokenizer, load_sparse_encoder, query_weights
    from korag.util.hashing import file_sha256

    r = export_opensearch(doc_only_model.model_dir, tmp_path / "os", name="korag-test")
    cfg = json.loads(r.encoder_config.read_text())
    assert cfg["function_name"] == "SPARSE_ENCODING" and cfg["model_format"] == "TORCH_SCRIPT"
    assert cfg["model_content_hash_value"] == file_sha256(r.encoder_zip)
    assert cfg["model_content_size_in_bytes"] == r.encoder_zip.stat().st_size
    with zipfile.ZipFile(r.encoder_zip) as z:
        assert sorted(z.namelist()) == ["korag-test.pt", "tokenizer.json"]
        z.extractall(tmp_path / "unzipped")
    traced = torch.jit.load(str(tmp_path / "unzipped" / "korag-test.pt"))
    model = load_sparse_encoder(doc_only_model.model_dir)
    tok = document_tokenizer(model)
    texts = ["서울은 대한민국의 수도이다. 인구는 약 940만 명.", "짧은 문장", "세종대왕 " * 40]
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    out = traced({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})["output"]
    ref = model.encode_document(texts, convert_to_tensor=True).to_dense()
    assert torch.equal(out > 0, ref > 0)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)

    # the query tokenizer zip: idf.json keyed the way ML Commons decodes ids, no dots anywhere
    tcfg = json.loads(r.tokenizer_config.read_text())
    assert tcfg["function_name"] == "SPARSE_TOKENIZE" and tcfg["model_content_hash_value"] == file_sha256(
        r.tokenizer_zip
    )
    with zipfile.ZipFile(r.tokenizer_zip) as z:
        idf = json.loads(z.read("idf.json"))
        spec = json.loads(z.read("tokenizer.json"))
    assert not any("." in t for t in idf)
    weights = query_weights(model)
    ids = list(np.nonzero(weights)[0].tolist())[:200]
    decoded = decode_like_opensearch(spec, ids)
    assert len(set(decoded)) == len(decoded)  # no two tokens collapse into one string
    assert all(idf[d] == pytest.approx(float(weights[i])) for d, i in zip(decoded, ids, strict=True))
    dot_id = tok.convert_tokens_to_ids(".")
    assert decode_like_opensearch(spec, [dot_id]) == [opensearch_token(".", r.dot_replacement)]
    pipeline = json.loads((tmp_path / "os" / "ingest_pipeline.json").read_text())
    assert pipeline["processors"][0]["sparse_encoding"]["prune_type"] == "max_ratio"
    mapping = json.loads((tmp_path / "os" / "index_mapping.json").read_text())
    assert mapping["mappings"]["properties"]["passage_embedding"]["type"] == "rank_features"


def test_cli_trains_evaluates_fuses_and_exports(tiny_encoder, sample_beir, tmp_path):
    out = tmp_path / "sp"
    res = run_cli(
        "train",
        "sparse",
        str(sample_beir),
        "--base",
        str(tiny_encoder),
        "--mode",
        "doc-only",
        "--no-expansion",
        "--output",
        str(out),
        "--max-steps",
        "6",
        "--batch-size",
        "8",
        "--set",
        "eval_steps=3",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "model" / "korag_sparse.json").is_file() and (out / "model" / "idf.json").is_file()
    res = run_cli(
        "eval", "retrieval", str(sample_beir), "--retriever", "sparse", "--model", str(out / "model"),
        "--output", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["retriever"]["type"] == "sparse" and "mrr@10" in payload["metrics"]
    assert payload["sparse_efficiency"]["query_active_dims"] > 0 and payload["timings"]["queries_per_second"] > 0
    res = run_cli(
        "eval", "retrieval", str(sample_beir), "--retriever", "hybrid", "--sparse-model", str(out / "model"),
        "--model", str(tiny_encoder), "--members", "bm25,sparse,dense", "--fusion", "weighted",
        "--weights", "0.6,0.2,0.2", "--output", str(tmp_path / "h.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(json.loads((tmp_path / "h.json").read_text())["retriever"]["members"]) == 3
    res = run_cli("export", "opensearch", str(out / "model"), "--output", str(tmp_path / "os"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "os" / "ml-commons_tokenizer_config.json").is_file()


def test_cli_sparse_errors(tiny_encoder, sample_beir, tmp_path):
    res = run_cli("eval", "retrieval", str(sample_beir), "--retriever", "sparse")
    assert res.returncode == 2 and "needs --sparse-model" in res.stderr
    res = run_cli("eval", "retrieval", str(sample_beir), "--retriever", "sparse", "--model", str(tiny_encoder))
    assert res.returncode == 2 and "not a korag sparse model" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(
        "eval", "retrieval", str(sample_beir), "--retriever", "hybrid", "--members", "bm25",
    )  # fmt: skip
    assert res.returncode == 2 and "two or more" in res.stderr
    res = run_cli(
        "train", "sparse", str(sample_beir), "--base", str(tiny_encoder), "--output", str(tmp_path / "o"),
        "--mode", "both",
    )  # fmt: skip
    assert res.returncode == 2 and "mode" in res.stderr
