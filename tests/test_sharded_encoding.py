"""Sharded corpus encoding (`korag encode`): two processes write the shards one process writes, and
the dense index built from shards searches exactly like one built from the corpus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

TEXTS = [
    f"{c}시는 {k}의 {w} 도시이며 인구가 많다" for c in "가나다라마바사" for k, w in (("북쪽", "항구"), ("남쪽", "산업"))
]
TEXTS += ["세종대왕은 훈민정음을 창제하였다", "한강은 서울을 가로지른다", "부산은 항구 도시이다"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from korag.models.tiny import build_tiny_encoder

    root = tmp_path_factory.mktemp("encode")
    model = build_tiny_encoder(root / "enc", texts=TEXTS, hidden=32, layers=1, heads=2, vocab_size=300)
    corpus = root / "corpus.jsonl"
    rows = [{"_id": f"p{i}", "title": f"제목{i % 3}", "text": t} for i, t in enumerate(TEXTS)]
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return root, model, corpus


def _shards(directory: Path) -> tuple[list[str], np.ndarray, dict]:
    from korag.retrieval.encode_shards import dense_vectors_from_shards, read_manifest

    ids, vectors = dense_vectors_from_shards(directory)
    return ids, np.asarray(vectors), read_manifest(directory)


def test_two_processes_write_the_shards_of_one_and_the_index_searches_the_same(setup):
    from korag.data.jsonl import read_corpus_jsonl
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.encode_shards import dense_index_from_shards, encode_corpus, iter_dense_shards
    from korag.training.distributed import cpu_environment, launch_command

    root, model, corpus = setup
    one = root / "one"
    result = encode_corpus(corpus, model, one, shard_size=4, batch_size=3, device="cpu")
    assert (result.passages, result.shards, result.kind, result.processes) == (len(TEXTS), 5, "dense", 1)

    two = root / "two"
    cmd = launch_command(
        ["korag.cli", "encode", str(corpus), "--model", str(model), "--output", str(two), "--shard-size", "4",
         "--batch-size", "3", "--device", "cpu"],
        2, launcher="torchrun", module=True,
    )  # fmt: skip
    r = subprocess.run(cmd, env=cpu_environment(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-5000:]
    assert r.stdout.count("passages →") == 1  # one report, from the main process

    ids1, v1, m1 = _shards(one)
    ids2, v2, m2 = _shards(two)
    assert m2["processes"] == 2 and m1["shards"] == m2["shards"]
    assert ids1 == ids2 == [f"p{i}" for i in range(len(TEXTS))]
    np.testing.assert_allclose(v1, v2, atol=1e-5)
    assert [len(i) for i, _ in iter_dense_shards(two)] == [4, 4, 4, 4, 1]

    # the index from shards (vectors memory-mapped, filled shard by shard) searches like a fresh one
    docs = read_corpus_jsonl(corpus)
    fresh = DenseRetriever(str(model), device="cpu")
    fresh.index(docs)
    sharded = dense_index_from_shards(two, vectors_path=root / "vectors.npy", corpus=docs)
    queries = ["가시 항구", "훈민정음 창제", "남쪽 산업 도시"]
    a, b = fresh.search(queries, k=5), sharded.search(queries, k=5)
    assert [a.doc_ids[i] for i in a.indices.ravel()] == [b.doc_ids[i] for i in b.indices.ravel()]
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert not sharded._index.vectors.flags.owndata  # a view of the memory-mapped file, not a copy


def test_an_interrupted_encoding_continues_and_changed_settings_are_refused(setup):
    from korag.errors import ConfigError, ModelError
    from korag.retrieval.encode_shards import MANIFEST, encode_corpus, read_manifest, shard_name

    root, model, corpus = setup
    out = root / "resumed"
    encode_corpus(corpus, model, out, shard_size=4, device="cpu")
    before = (out / shard_name(0)).stat().st_mtime_ns
    (out / shard_name(3)).unlink()  # as if killed before the last shards
    (out / MANIFEST).unlink()
    with pytest.raises(ModelError, match="not a finished"):
        read_manifest(out)
    again = encode_corpus(corpus, model, out, shard_size=4, device="cpu")
    assert again.encoded_shards == 1 and (out / shard_name(0)).stat().st_mtime_ns == before
    assert read_manifest(out)["passages"] == len(TEXTS)
    with pytest.raises(ConfigError, match="other settings"):
        encode_corpus(corpus, model, out, shard_size=5, device="cpu")
