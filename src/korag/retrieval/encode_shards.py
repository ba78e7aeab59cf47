"""Encoding a large corpus into vector shards on one or many processes, and reading them back.

`encode_corpus` streams passages from disk (a JSON Lines corpus, or a dataset directory holding
``corpus.jsonl``/``passages.jsonl``) in shards of `shard_size` passages; under ``accelerate
launch`` or ``torchrun`` shard *i* is encoded by rank *i mod N*, so every process holds one
shard's texts and vectors at a time whatever the corpus size. Each shard is one safetensors file
(written atomically, ids in its metadata): dense vectors as ``dense`` (rows × dim, float32),
learned sparse ones as a CSR triple ``indptr``/``indices``/``values``. The main process writes
``manifest.json`` last, once every shard exists — a directory without one is unfinished, and
rerunning the same command continues it (finished shards are kept; different settings are
refused).

Every process reads the whole file to find its shards (parsing a line costs far less than
encoding it), which keeps the shard boundaries identical on any process count: the shards of a
2-process run are byte-for-byte those of a 1-process run up to the encoder's arithmetic.

Reading: `iter_dense_shards` yields one shard at a time; `dense_index_from_shards` builds a
`DenseRetriever` by filling one preallocated matrix (in memory or a memory-mapped ``.npy``), so
no second full copy of the vectors ever exists; `sparse_matrix_from_shards` stacks sparse shards.
Formats other than JSON Lines are read whole with `korag.data.load.load` first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from korag import atomic
from korag.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SETTINGS = "encode_settings.json"
FORMAT = "korag-vector-shards"


def shard_name(index: int) -> str:
    """File name of shard `index`."""
    return f"shard-{index:05d}.safetensors"


@dataclass
class EncodeResult:
    """What an encoding run did (the same on every process; `encoded` counts this process's work)."""

    output: Path
    passages: int
    shards: int
    kind: str
    dim: int
    processes: int
    encoded_shards: int
    seconds: float
    passages_per_second: float
    extra: dict[str, Any] = field(default_factory=dict)


def stream_passages(path: str | Path, *, with_title: bool = True) -> Iterator[tuple[str, str]]:
    """(id, text to encode) for every passage of `path`, in order, without holding the corpus.

    JSON Lines (``_id``/``id``, ``text``/``contents``, ``title`` detected on the first record, as
    `korag.data.jsonl.read_corpus_jsonl` does) and directories holding ``corpus.jsonl`` or
    ``passages.jsonl`` are streamed; any other source is loaded whole first."""
    from korag.data.jsonl import ID_FIELDS, TEXT_FIELDS, TITLE_FIELDS, _detect
    from korag.util.reading import iter_jsonl

    p = Path(path)
    if p.is_dir():
        found = next((p / n for n in ("corpus.jsonl", "passages.jsonl") if (p / n).is_file()), None)
        p = found or p
    if not (p.is_file() and p.suffix == ".jsonl"):
        yield from _loaded_passages(Path(path), with_title)
        return
    id_key = text_key = title_key = None
    for lineno, obj in iter_jsonl(p):
        if id_key is None:
            id_key = _detect(obj, ID_FIELDS) or ""
            text_key = _detect(obj, TEXT_FIELDS) or "text"
            title_key = _detect(obj, TITLE_FIELDS)
        doc_id = str(obj.get(id_key, lineno)) if id_key else str(lineno)
        text = obj.get(text_key)
        if not isinstance(text, str):
            raise DataError(p, "no text", record=f"line {lineno}", field=str(text_key))
        title = obj.get(title_key) if title_key else None
        yield doc_id, (f"{title} {text}" if with_title and title else text)


def _loaded_passages(path: Path, with_title: bool) -> Iterator[tuple[str, str]]:
    from korag.data.load import load
    from korag.data.schema import Corpus

    data = load(path)
    corpus = data if isinstance(data, Corpus) else data.corpus
    yield from zip(corpus.ids, corpus.contents(with_title), strict=True)


def _chunks(passages: Iterator[tuple[str, str]], size: int, keep) -> Iterator[tuple[int, list, int]]:
    """(shard index, its passages or [] when `keep(index)` is false, its size)."""
    index, rows, n = 0, [], 0
    for row in passages:
        if keep(index):
            rows.append(row)
        n += 1
        if n == size:
            yield index, rows, n
            index, rows, n = index + 1, [], 0
    if n:
        yield index, rows, n


class _Encoder:
    """A dense or learned-sparse document encoder behind one `encode(texts) → tensors` call."""

    def __init__(self, model: str, *, device: str, batch_size: int, max_seq_length: int | None, precision: str):
        from korag.models.sparse import read_sparse_info

        self.model = model
        try:
            read_sparse_info(model)
            self.kind = "sparse"
        except ModelError:  # no korag_sparse.json: a dense model
            self.kind = "dense"
        if self.kind == "sparse":
            from korag.retrieval.sparse import SparseRetriever

            self.impl: Any = SparseRetriever(
                model, batch_size=batch_size, max_seq_length=max_seq_length, precision=precision, device=device
            )
            m = self.impl.model
            get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
            self.dim = int(get())  # the vocabulary: sparse vectors index token ids
        else:
            from korag.models.encoder import DenseEncoder

            self.impl = DenseEncoder(
                model, batch_size=batch_size, max_seq_length=max_seq_length, precision=precision, device=device
            )
            self.dim = self.impl.dim

    def encode(self, texts: list[str], show_progress: bool) -> dict[str, np.ndarray]:
        if self.kind == "dense":
            return {"dense": np.ascontiguousarray(self.impl.encode_documents(texts, show_progress=show_progress))}
        m = self.impl.encode_documents(texts, show_progress=show_progress).tocsr()
        m.sort_indices()
        return {
            "indptr": m.indptr.astype(np.int64),
            "indices": m.indices.astype(np.int64),
            "values": m.data.astype(np.float32),
        }

    def settings(self) -> dict[str, Any]:
        if self.kind == "dense":
            return {"kind": "dense", "encoder": self.impl.config(), "dim": self.dim}
        return {"kind": "sparse", "encoder": self.impl.config(), "dim": self.dim}


def _write_shard(path: Path, tensors: dict[str, np.ndarray], ids: list[str], dim: int) -> None:
    from safetensors.numpy import save_file

    meta = {"ids": json.dumps(ids, ensure_ascii=False), "rows": str(len(ids)), "dim": str(dim)}
    with atomic.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def encode_corpus(
    corpus: str | Path,
    model: str | Path,
    output: str | Path,
    *,
    shard_size: int = 10_000,
    batch_size: int = 32,
    with_title: bool = True,
    max_seq_length: int | None = None,
    precision: str = "auto",
    device: str = "auto",
    show_progress: bool = False,
) -> EncodeResult:
    """Encode every passage of `corpus` with `model` (a dense sentence-transformers model, or a
    korag learned-sparse one) into safetensors shards plus ``manifest.json`` under `output`.
    Runs alone or under a launcher (each rank encodes every N-th shard); only the main process
    writes the settings and the manifest."""
    from accelerate import PartialState

    from korag.models.device import resolve_device

    if shard_size < 1:
        raise ConfigError("shard_size must be at least 1")
    device = resolve_device(device)
    state = PartialState(cpu=device == "cpu")
    rank, world = state.process_index, state.num_processes
    out = Path(output)
    encoder = _Encoder(
        str(model), device=device, batch_size=batch_size, max_seq_length=max_seq_length, precision=precision
    )
    settings = {
        "format": FORMAT,
        "corpus": str(Path(corpus).resolve()),
        "shard_size": shard_size,
        "with_title": with_title,
        **encoder.settings(),
    }
    _agree_on_settings(state, out, settings)
    t0 = time.perf_counter()
    shards: list[dict[str, Any]] = []
    encoded = done = 0
    first = 0

    def mine(index: int) -> bool:
        return index % world == rank

    for index, rows, n in _chunks(stream_passages(corpus, with_title=with_title), shard_size, mine):
        shards.append({"file": shard_name(index), "rows": n, "first": first})
        first += n
        path = out / shard_name(index)
        if not mine(index) or path.is_file():  # another rank's, or finished by an earlier run
            continue
        ids = [r[0] for r in rows]
        tensors = encoder.encode([r[1] for r in rows], show_progress)
        _write_shard(path, tensors, ids, encoder.dim)
        encoded += 1
        done += n
        log.info("rank %d: %s (%d passages)", rank, path.name, n)
    if not shards:
        raise DataError(Path(corpus), "no passages to encode")
    seconds = time.perf_counter() - t0
    state.wait_for_everyone()
    if state.is_main_process:
        missing = [s["file"] for s in shards if not (out / s["file"]).is_file()]
        if missing:
            raise DataError(out, f"shards missing after encoding: {', '.join(missing[:3])}")
        manifest = {**settings, "passages": first, "shards": shards, "processes": world}
        atomic.write_json(out / MANIFEST, manifest)
    state.wait_for_everyone()
    return EncodeResult(
        out, first, len(shards), encoder.kind, encoder.dim, world, encoded, seconds, done / seconds if seconds else 0.0
    )


def _agree_on_settings(state, out: Path, settings: dict[str, Any]) -> None:
    """The main process records the settings (or refuses an output encoded under others); every
    process learns the outcome."""
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [None]
    if state.is_main_process:
        path = out / SETTINGS
        if path.is_file():
            before = json.loads(path.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            if changed:
                box = [
                    f"{out}: holds shards encoded with other settings ({', '.join(changed)}); "
                    "use another output directory or remove it"
                ]
        if box[0] is None:
            out.mkdir(parents=True, exist_ok=True)
            (out / MANIFEST).unlink(missing_ok=True)  # the manifest comes back once every shard exists
            atomic.write_json(path, settings)
    if state.num_processes > 1:
        broadcast_object_list(box, from_process=0)
    state.wait_for_everyone()
    if box[0] is not None:
        raise ConfigError(box[0])


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a finished shard directory."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelError(f"{directory}: no {MANIFEST} — not a finished korag encoding (rerun korag encode)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{directory}: {MANIFEST} is not a korag shard manifest")
    return manifest


def _open_shard(directory: Path, entry: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
    from safetensors import safe_open

    with safe_open(str(directory / entry["file"]), framework="numpy") as f:
        ids = json.loads(f.metadata()["ids"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    if len(ids) != entry["rows"]:
        raise ModelError(f"{directory / entry['file']}: {len(ids)} rows, the manifest says {entry['rows']}")
    return ids, tensors


def iter_dense_shards(directory: str | Path) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, vectors) of each dense shard in order, one shard in memory at a time."""
    d = Path(directory)
    manifest = read_manifest(d)
    if manifest["kind"] != "dense":
        raise ModelError(f"{directory}: holds {manifest['kind']} vectors, not dense ones")
    for entry in manifest["shards"]:
        ids, tensors = _open_shard(d, entry)
        yield ids, tensors["dense"]


def dense_vectors_from_shards(
    directory: str | Path, *, vectors_path: str | Path | None = None
) -> tuple[list[str], np.ndarray]:
    """(ids, vectors) of every shard, filled shard by shard into one preallocated float32 matrix
    — in memory, or with `vectors_path` a memory-mapped ``.npy`` file (then the vectors need not
    fit in memory at all)."""
    manifest = read_manifest(directory)
    shape = (int(manifest["passages"]), int(manifest["dim"]))
    if vectors_path is not None:
        vectors = np.lib.format.open_memmap(str(vectors_path), mode="w+", dtype=np.float32, shape=shape)
    else:
        vectors = np.empty(shape, dtype=np.float32)
    ids: list[str] = []
    for shard_ids, block in iter_dense_shards(directory):
        vectors[len(ids) : len(ids) + len(shard_ids)] = block
        ids += shard_ids
    if isinstance(vectors, np.memmap):
        vectors.flush()
    return ids, vectors


def dense_index_from_shards(
    directory: str | Path,
    *,
    model: Any = None,
    device: str = "cpu",
    vectors_path: str | Path | None = None,
    corpus: Any = None,
):
    """A `DenseRetriever` over the shards of `directory`, with the encoder they were made with
    (or `model`, an already loaded one); `corpus` (same ids, same order) gives results their text.
    See `dense_vectors_from_shards` for `vectors_path`."""
    from korag.retrieval.dense import DenseRetriever
    from korag.retrieval.vector_index import VectorIndex

    manifest = read_manifest(directory)
    enc = manifest["encoder"]
    retriever = DenseRetriever(
        model if model is not None else enc["model"],
        query_prefix=enc["query_prefix"],
        passage_prefix=enc["passage_prefix"],
        batch_size=enc["batch_size"],
        max_seq_length=enc["max_seq_length"],
        precision=enc["precision"],
        with_title=manifest["with_title"],
        device=device,
        reference=enc["model"] if model is not None else None,
    )
    ids, vectors = dense_vectors_from_shards(directory, vectors_path=vectors_path)
    if corpus is not None:
        if list(corpus.ids) != ids:
            raise DataError(None, "the corpus given does not hold the encoded passages in their order")
        retriever.index_vectors(vectors, corpus)
    else:
        # the index's own constructor: no copy of the (possibly memory-mapped) matrix
        retriever._index = VectorIndex(vectors, ids)
    return retriever


def sparse_matrix_from_shards(directory: str | Path):
    """(ids, documents × vocabulary CSR matrix) of sparse shards, stacked in order."""
    import scipy.sparse as sp

    d = Path(directory)
    manifest = read_manifest(d)
    if manifest["kind"] != "sparse":
        raise ModelError(f"{directory}: holds {manifest['kind']} vectors, not sparse ones")
    ids: list[str] = []
    blocks = []
    for entry in manifest["shards"]:
        shard_ids, t = _open_shard(d, entry)
        blocks.append(sp.csr_matrix((t["values"], t["indices"], t["indptr"]), shape=(len(shard_ids), manifest["dim"])))
        ids += shard_ids
    return ids, sp.vstack(blocks, format="csr")


def result_dict(result: EncodeResult) -> dict[str, Any]:
    """`result` as JSON-ready data."""
    d = asdict(result)
    d["output"] = str(result.output)
    return d
