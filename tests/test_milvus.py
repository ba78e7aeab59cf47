"""Milvus as a collection's engine: BM25 as sparse vectors, and `MilvusStore` against korag's
embedded retrievers in Milvus Lite file mode and against a `milvus-lite server` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from korag.collections.milvus import EMPTY_DOC_KEY, MilvusStore, milvus_name
from korag.data.sample import load_sample
from korag.data.schema import Corpus
from korag.errors import ConfigError
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.fusion import fuse

DEPTH = 20  # hybrid: each field searched this deep, as HybridRetriever(depth=DEPTH)


# -- data ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    """The built-in Korean sample: 48 passages, 191 questions."""
    return load_sample().to_retrieval_set()


@pytest.fixture(scope="module")
def bm25(sample) -> BM25Retriever:
    r = BM25Retriever("bigram-stem")
    r.index(sample.corpus)
    return r


@pytest.fixture(scope="module")
def dense(sample, tiny_encoder):
    """The embedded dense retriever (a tiny sentence-transformers model) and its vectors."""
    from korag.retrieval.dense import DenseRetriever

    d = DenseRetriever(tiny_encoder)
    docs = d.encode_documents(sample.corpus.contents(d.with_title))
    d.index_vectors(docs, sample.corpus)
    return d, docs, d.encode_queries(sample.queries.texts)


@pytest.fixture(scope="module")
def learned(sample):
    """Random non-negative sparse vectors standing in for a learned sparse model."""
    rng = np.random.default_rng(3)
    docs = sp.random(len(sample.corpus), 5000, density=0.01, random_state=rng, format="csr", dtype=np.float32)
    queries = sp.random(len(sample.queries), 5000, density=0.02, random_state=rng, format="csr", dtype=np.float32)
    return docs, queries


@pytest.fixture(scope="module")
def embedded_rankings(sample, bm25, dense):
    """The embedded BM25 and dense rankings one deeper than the hybrid's depth."""
    return [bm25.search(sample.queries, k=DEPTH + 1), dense[0].search(sample.queries, k=DEPTH + 1)]


def _avgdl(r: BM25Retriever) -> float:
    return float(r.term_counts().doc_lengths.mean())


# -- a milvus-lite server process -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiteServer:
    """`milvus-lite server` on 127.0.0.1 in a child process; `restart` keeps its port and data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()  # printed once the server listens
        if "listening" not in line:
            self.stop()
            pytest.fail(f"milvus-lite server did not start: {line!r}")
        threading.Thread(target=lambda out=self.proc.stdout: [None for _ in out], daemon=True).start()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # a clean stop
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = LiteServer(tmp_path_factory.mktemp("milvus-server") / "data")
    s.start()
    yield s
    s.stop()


# -- stores filled with the sample ----------------------------------------------------------------
def _fill(store: MilvusStore, sample, bm25, dense, learned) -> None:
    c = sample.corpus
    store.batch_rows = 7  # several requests
    store.ensure()
    store.upsert(
        c.ids,
        c.texts,
        c.titles,
        c.metas,
        dense=dense[1],
        sparse=learned[0],
        bm25=bm25.document_vectors(),
        bm25_avgdl=_avgdl(bm25),
    )


@pytest.fixture(scope="module", params=["lite", "server"])
def store(request, tmp_path_factory, sample, bm25, dense, learned):
    """The sample in Milvus: a Lite file, or the server process."""
    if request.param == "lite":
        uri = str(tmp_path_factory.mktemp("milvus-lite") / "korag.db")
    else:
        uri = request.getfixturevalue("server").uri
    s = MilvusStore(uri, "korag_sample", dense_dim=dense[1].shape[1], sparse=True, bm25=True)
    _fill(s, sample, bm25, dense, learned)
    yield s
    s.drop()
    s.close()


def _check_top_k(got: list[tuple[str, float]], ref: list[tuple[str, float]], true_score: dict[str, float]) -> None:
    """`got` is a correct top-k: its scores are `ref`'s, and each passage's score is its true one
    (passages with equal scores may come in another order or, at the cut, be others)."""
    assert len(got) == len(ref)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in ref], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([s for _, s in got], [true_score[d] for d, _ in got], rtol=1e-5, atol=1e-5)


# -- BM25 as sparse vectors -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_bm25_vectors_equal_search_scores(sample, method):
    r = BM25Retriever("bigram-stem", method=method, k1=1.2, b=0.7)
    first = sample.corpus.subset(range(30))
    r.index(first)
    r.add(sample.corpus.subset(range(30, len(sample.corpus))))  # statistics after an update too
    r.delete(sample.corpus.ids[3:6])
    docs = r.document_vectors()
    assert docs.shape == (len(r.doc_ids), len(r.term_counts().vocab))
    scores = (r.query_vectors(sample.queries.texts) @ docs.T).toarray()
    ranking = r.search(sample.queries, k=len(r.doc_ids))
    matched = ranking.indices >= 0
    assert matched.sum() > 1000
    got = np.take_along_axis(scores, np.where(matched, ranking.indices, 0), axis=1)
    np.testing.assert_allclose(got[matched], ranking.scores[matched], rtol=1e-5, atol=1e-5)
    # a passage search does not return shares no term with the query: score 0 as a vector too
    returned = np.zeros_like(scores, dtype=bool)
    rows, cols = np.nonzero(matched)
    returned[rows, ranking.indices[rows, cols]] = True
    assert np.all(scores[~returned] == 0)


def test_bm25_query_vectors_count_repeated_tokens(bm25):
    from korag.retrieval.bm25 import _idf

    text = "대한민국 수도 대한민국 수도 zzqxj"  # repeated tokens, and one the index does not know
    counts = bm25.term_counts()
    idf = _idf("lucene", counts.document_frequencies, len(counts))
    expected = np.zeros(len(counts.vocab))
    tokens = bm25.tokenizer.tokenize_batch([text])[0]
    for t in tokens:
        if t in counts.vocab:
            expected[counts.vocab[t]] += idf[counts.vocab[t]]  # once per occurrence, as bm25s
    assert len(tokens) > len(set(tokens)) and "zzqxj" not in counts.vocab
    np.testing.assert_allclose(bm25.query_vectors([text]).toarray()[0], expected, rtol=1e-6)
    assert bm25.query_vectors(["zzqxj"]).nnz == 0


@pytest.mark.parametrize("method", ["bm25l", "bm25+"])
def test_bm25_vectors_refuse_methods_without_a_dot_product(sample, method):
    r = BM25Retriever("bigram", method=method)
    r.index(sample.corpus.subset(range(5)))
    with pytest.raises(ConfigError, match="no sparse-vector form"):
        r.document_vectors()
    with pytest.raises(ConfigError, match="no sparse-vector form"):
        r.query_vectors(["수도"])


# -- names ------------------------------------------------------------------------------------------
def test_milvus_name():
    assert milvus_name("papers") == "korag_papers"
    derived = {milvus_name(n) for n in ("a-b", "a.b", "A_b", "a_b", "1abc", "논문")}
    assert len(derived) == 6
    assert all(n.startswith("korag_") and n.replace("_", "").isalnum() and n.isascii() for n in derived)


# -- search and hybrid, Lite file and server ---------------------------------------------------------
def test_search_equals_embedded(store, sample, bm25, dense, learned):
    assert store.count() == len(sample.corpus)
    queries = sample.queries
    # BM25: Milvus over the vectors vs bm25s over its own index
    q_bm25 = bm25.query_vectors(queries.texts)
    true = (q_bm25 @ bm25.document_vectors().T).toarray()
    ref = bm25.search(queries, k=10)
    got = store.search("bm25", q_bm25, k=10)
    assert sum(map(len, got)) > 1000
    for i, row in enumerate(got):
        _check_top_k(row, ref.row(i), dict(zip(bm25.doc_ids, true[i], strict=True)))
    # dense: Milvus FLAT vs korag's exact index
    retriever, docs, q_dense = dense
    true = q_dense @ docs.T
    ref = retriever.search(queries, k=10)
    for i, row in enumerate(store.search("dense", q_dense, k=10)):
        _check_top_k(row, ref.row(i), dict(zip(sample.corpus.ids, true[i], strict=True)))
    # learned sparse: vs the dot products
    true = (learned[1] @ learned[0].T).toarray()
    for i, row in enumerate(store.search("sparse", learned[1], k=10)):
        order = np.argsort(-true[i], kind="stable")[: len(row)]
        expected = [(sample.corpus.ids[j], true[i, j]) for j in order if true[i, j] > 0]
        _check_top_k(row, expected, dict(zip(sample.corpus.ids, true[i], strict=True)))


def _distinct(ranking, i: int, depth: int) -> bool:
    """Whether the top `depth` + 1 scores of row i are apart by more than float32 rounding of two
    ways of computing them (so both engines rank them alike); the tiny encoder's similarities
    crowd around 0.95, a few 1e-6 apart."""
    s = ranking.scores[i, : depth + 1]
    s = s[np.isfinite(s)]
    return bool(np.all(np.abs(np.diff(s)) > 2e-6 * np.maximum(1.0, np.abs(s[1:]))))


@pytest.mark.parametrize("fusion", ["milvus", "korag"])
@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_hybrid_equals_fuse(store, sample, bm25, dense, embedded_rankings, method, fusion):
    """Milvus' rankers compute `fuse`'s scores and break ties by passage id; fusion="korag" is
    `fuse` itself, ties included."""
    queries = sample.queries
    q_dense = dense[2]
    rankings = embedded_rankings
    weights = [0.3, 0.7] if method == "weighted" else None
    fused = fuse([r.top(DEPTH) for r in rankings], method=method, weights=weights, normalization="none")
    got = store.hybrid(
        {"bm25": bm25.query_vectors(queries.texts), "dense": q_dense},
        k=10,
        method=method,
        weights=weights,
        depth=DEPTH,
        fusion=fusion,
    )
    # ties inside one field's list may take their ranks in another order: compare the other queries
    checked = ties = 0
    for i, row in enumerate(got):
        if not all(_distinct(r, i, DEPTH) for r in rankings):
            continue
        checked += 1
        every = fused.row(i)  # korag's order: equal scores in the order of the first field's list
        if fusion == "milvus":
            every = sorted(every, key=lambda x: (-round(x[1], 9), x[0]))  # equal scores by id
        _check_top_k(row, every[:10], dict(every))
        assert [d for d, _ in row] == [d for d, _ in every[:10]]
        scores = [round(sc, 9) for _, sc in row]
        ties += len(set(scores)) < len(scores)
    assert checked > len(got) / 2
    if method == "rrf":
        assert ties > 10  # the case where the two tie rules differ is common


def test_hybrid_options_milvus_cannot_do(store, bm25, dense):
    q = {"bm25": bm25.query_vectors(["대한민국 수도"]), "dense": dense[2][:1]}
    with pytest.raises(ConfigError, match="no per-field weights"):
        store.hybrid(q, weights=[1, 2])
    with pytest.raises(ConfigError, match="atan or not at all"):
        store.hybrid(q, method="weighted", normalization="minmax")
    with pytest.raises(ConfigError, match="at least two fields"):
        store.hybrid({"bm25": q["bm25"]})
    # korag's fusion takes them
    assert len(store.hybrid(q, k=3, weights=[1, 2], fusion="korag")[0]) == 3
    assert len(store.hybrid(q, k=3, method="weighted", normalization="minmax", fusion="korag")[0]) == 3


def test_hybrid_handles_queries_without_terms(store, bm25, dense):
    _, _, q_dense = dense
    q = bm25.query_vectors(["zzqxj", "대한민국 수도"])  # the first has no known token
    assert q[0].nnz == 0
    got = store.hybrid({"bm25": q, "dense": q_dense[:2]}, k=5, depth=DEPTH)
    assert len(got[0]) == 5 and len(got[1]) == 5  # the dense field answers alone
    assert store.search("bm25", q, k=5)[0] == []


# -- writes, BM25 statistics, errors (Lite file) ------------------------------------------------------
@pytest.fixture()
def lite_uri(tmp_path) -> str:
    return str(tmp_path / "lite.db")


def test_upsert_delete_count(lite_uri, sample, bm25):
    c = sample.corpus
    docs = bm25.document_vectors().tolil()
    docs[0, :] = 0  # a passage without any term: Milvus refuses an empty sparse vector
    with MilvusStore(lite_uri, "korag_rw", dense_dim=None, sparse=False) as s:
        s.ensure()
        assert s.upsert(c.ids, c.texts, c.titles, c.metas, bm25=docs.tocsr(), bm25_avgdl=_avgdl(bm25)) == len(c)
        assert s.count() == len(c)
        q = bm25.query_vectors([c.texts[0], c.texts[1]])
        first, second = s.search("bm25", q, k=len(c))
        assert c.ids[0] not in [d for d, _ in first]  # stored with the sentinel key, never matched
        assert second[0][0] == c.ids[1]
        s.delete([*c.ids[1:4], "no-such-id"])
        assert s.count() == len(c) - 3
        assert not {d for row in s.search("bm25", q, k=len(c)) for d, _ in row} & set(c.ids[1:4])
        # upsert replaces by id: the count stays, the new text is stored
        s.upsert([c.ids[5]], ["바뀐 본문"], bm25=docs.tocsr()[[5]], bm25_avgdl=_avgdl(bm25))
        assert s.count() == len(c) - 3
        assert sorted(s.ids()) == sorted(set(c.ids) - set(c.ids[1:4]))
        row = s._client.query(s.name, filter=f'id == "{c.ids[0]}"', output_fields=["bm25", "pages", "document"])[0]
        assert row["bm25"] == {EMPTY_DOC_KEY: 1.0}


def test_metadata_is_stored(lite_uri):
    corpus = Corpus(
        ["d#0"],
        ["본문"],
        ["제목"],
        [{"document": "d", "file": "보고서.pdf", "pages": [3, 4], "char_start": 10, "char_end": 20}],
    )
    with MilvusStore(lite_uri, "korag_meta", dense_dim=None, sparse=False) as s:
        s.ensure()
        s.upsert(corpus.ids, corpus.texts, corpus.titles, corpus.metas, bm25=sp.csr_matrix(([1.0], ([0], [7]))))
        row = s._client.query(
            s.name, filter='id == "d#0"', output_fields=["document", "file", "pages", "meta", "title"]
        )[0]
        assert (row["document"], row["file"], row["pages"], row["title"]) == ("d", "보고서.pdf", [3, 4], "제목")
        assert row["meta"] == {"char_start": 10, "char_end": 20}


def test_bm25_drift_and_sync(lite_uri, sample):
    """Rows written before an add keep the old avgdl (approximate); `sync_bm25` makes them exact."""
    c = sample.corpus
    first, second = c.subset(range(24)), c.subset(range(24, len(c)))
    r = BM25Retriever("bigram-stem")
    r.index(first)
    with MilvusStore(lite_uri, "korag_drift", dense_dim=None, sparse=False) as s:
        s.ensure()
        s.upsert(first.ids, first.texts, first.titles, first.metas, bm25=r.document_vectors(), bm25_avgdl=_avgdl(r))
        assert s.bm25_stale(_avgdl(r)) == 0
        old = _avgdl(r)
        r.add(second)
        new = _avgdl(r)
        assert new != old
        rows = r.document_vectors()[len(first) :]
        s.upsert(second.ids, second.texts, second.titles, second.metas, bm25=rows, bm25_avgdl=new)
        assert s.bm25_stale(new) == len(first)
        assert s.bm25_stale(new, rel_tol=abs(new - old) / new * 2) == 0

        q = r.query_vectors(sample.queries.texts)
        true = (q @ r.document_vectors().T).toarray()

        def max_error() -> float:
            err = 0.0
            for i, row in enumerate(s.search("bm25", q, k=10)):
                truth = dict(zip(r.doc_ids, true[i], strict=True))
                err = max([err, *(abs(sc - truth[d]) / max(1.0, truth[d]) for d, sc in row)])
            return err

        assert max_error() > 1e-3  # approximate: the first 24 rows use the old avgdl
        assert s.sync_bm25(r) == len(first)
        assert s.bm25_stale(new) == 0 and s.count() == len(c)
        assert max_error() < 1e-5  # exact again
        assert s.sync_bm25(r) == 0
        ref = r.search(sample.queries, k=10)
        for i, row in enumerate(s.search("bm25", q, k=10)):
            _check_top_k(row, ref.row(i), dict(zip(r.doc_ids, true[i], strict=True)))


def test_errors_are_one_line(lite_uri, tmp_path):
    def one_line(exc_info) -> str:
        msg = str(exc_info.value)
        assert "\n" not in msg
        return msg

    with pytest.raises(ConfigError, match="not a Milvus collection name") as e:
        MilvusStore(lite_uri, "my-papers", dense_dim=4, sparse=False)
    assert "korag_my_papers_" in one_line(e)
    with pytest.raises(ConfigError, match=r"must end in \.db"):
        MilvusStore(tmp_path / "x.sqlite", "korag_x", dense_dim=4, sparse=False)
    with pytest.raises(ConfigError, match=r"unreachable|cannot reach") as e:
        MilvusStore(f"http://127.0.0.1:{_free_port()}", "korag_x", dense_dim=4, sparse=False, timeout=2).ensure()
    one_line(e)

    s = MilvusStore(lite_uri, "korag_err", dense_dim=4, sparse=False, bm25=False)
    s.ensure()
    with pytest.raises(ConfigError, match="dimension 3; Milvus collection korag_err holds 4") as e:
        s.upsert(["a"], ["본문"], dense=np.ones((1, 3), np.float32))
    one_line(e)
    with pytest.raises(ConfigError, match="dimension 5"):
        s.search("dense", np.ones((1, 5), np.float32))
    with pytest.raises(ConfigError, match="'dense' vectors are missing"):
        s.upsert(["a"], ["본문"])
    with pytest.raises(ConfigError, match="no 'bm25' field"):
        s.search("bm25", sp.csr_matrix((1, 3)))
    s.upsert(["a"], ["본문"], dense=np.ones((1, 4), np.float32))
    # the same Milvus collection opened with another model's dimension
    with pytest.raises(ConfigError, match="holds 4-dimensional dense vectors, this model gives 8") as e:
        MilvusStore(lite_uri, "korag_err", dense_dim=8, sparse=False, bm25=False).ensure()
    one_line(e)
    with pytest.raises(ConfigError, match="no 'bm25' field"):
        MilvusStore(lite_uri, "korag_err", dense_dim=4, sparse=False, bm25=True).ensure()
    with pytest.raises(ConfigError, match="has a 'dense' field this store does not fill"):
        MilvusStore(lite_uri, "korag_err", dense_dim=None, sparse=False, bm25=True).ensure()
    neg = MilvusStore(lite_uri, "korag_neg", dense_dim=None, sparse=True, bm25=False)
    neg.ensure()
    with pytest.raises(ConfigError, match="finite weights ≥ 0"):
        neg.upsert(["a"], ["본문"], sparse=sp.csr_matrix(([-1.0], ([0], [3]))))
    s.close()
    with pytest.raises(ConfigError, match="closed"):
        s.count()


def _child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `code` in another Python process."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


OPEN_IN_CHILD = """
    import sys
    from korag.collections.milvus import MilvusStore
    from korag.errors import KoragError
    try:
        s = MilvusStore({uri!r}, {name!r}, dense_dim={dim!r}, sparse={sparse!r})
        s.ensure()
        print("count", s.count())
    except KoragError as exc:
        print(exc)
        sys.exit(2)
"""


def test_second_process_gets_one_line_error(lite_uri):
    s = MilvusStore(lite_uri, "korag_locked", dense_dim=None, sparse=False)
    s.ensure()
    s.upsert(["a"], ["본문"], bm25=sp.csr_matrix(([1.0], ([0], [3]))))
    child = _child(OPEN_IN_CHILD.format(uri=lite_uri, name="korag_locked", dim=None, sparse=False))
    assert child.returncode == 2, child.stdout + child.stderr
    assert child.stdout.strip() == (
        f"{Path(lite_uri).resolve()} is open in another process (Milvus Lite allows one); stop it or use "
        "`milvus-lite server --data-dir DIR --host 127.0.0.1 --port PORT` and an http:// URI"
    )
    assert child.stderr.strip() == ""  # pymilvus' and Lite's tracebacks are muted
    s.close()  # releases the file: now the other process opens it
    child = _child(OPEN_IN_CHILD.format(uri=lite_uri, name="korag_locked", dim=None, sparse=False))
    assert child.returncode == 0, child.stdout + child.stderr
    assert child.stdout.strip() == "count 1"


# -- server: restart, reload, two processes ------------------------------------------------------------
def test_server_restart_and_load(server, sample, bm25, dense, learned):
    s = MilvusStore(server.uri, "korag_restart", dense_dim=dense[1].shape[1], sparse=True, bm25=True)
    _fill(s, sample, bm25, dense, learned)
    q = bm25.query_vectors(sample.queries.texts[:20])
    before = s.search("bm25", q, k=10)
    # another process uses the same server at the same time (what a Lite file cannot do)
    child = _child(OPEN_IN_CHILD.format(uri=server.uri, name="korag_restart", dim=dense[1].shape[1], sparse=True))
    assert child.stdout.strip() == f"count {len(sample.corpus)}", child.stdout + child.stderr

    server.restart()
    from pymilvus import MilvusClient

    probe = MilvusClient(uri=server.uri)
    assert probe.get_load_state("korag_restart")["state"].name == "NotLoad"  # a restart unloads
    probe.close()
    # the open store reconnects and loads the collection by itself
    assert s.search("bm25", q, k=10) == before
    assert s.count() == len(sample.corpus)
    server.restart()
    fresh = MilvusStore(server.uri, "korag_restart", dense_dim=dense[1].shape[1], sparse=True, bm25=True)
    fresh.ensure()  # load_collection
    assert fresh._client.get_load_state("korag_restart")["state"].name == "Loaded"
    assert fresh.search("bm25", q, k=10) == before
    fresh.drop()
    fresh.close()
    s.close()
