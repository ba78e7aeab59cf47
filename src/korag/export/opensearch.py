"""Export a korag sparse model for OpenSearch neural sparse search (ML Commons, TorchScript).

What ML Commons expects (ml-commons' `SparseEncodingTranslator` / `SparseTokenizerModel`,
opensearch-py-ml's sparse model packaging):

* ``SPARSE_ENCODING`` model zip: one traced TorchScript ``.pt`` whose forward takes a single
  ``Dict[str, Tensor]`` (``input_ids``, ``attention_mask``; no token types) and returns
  ``{"output": Tensor[batch, vocab]}``, plus ``tokenizer.json``; ML Commons turns non-zero
  entries into ``{token string: weight}`` by *decoding* each id with that tokenizer.
* ``SPARSE_TOKENIZE`` zip (doc-only query side): ``tokenizer.json`` + ``idf.json``; each query
  token weighs ``idf.get(decoded token, 1.0)``.
* register config: ``name``, ``version``, ``model_format``, ``function_name``,
  ``model_content_size_in_bytes``, ``model_content_hash_value`` (sha256 of the zip).

Token strings: decoding a SentencePiece id strips the word-boundary mark, so ``▁서울`` and
``서울`` — different tokens with different weights — would both become ``서울`` and overwrite
each other; and a string containing ``.`` is not a usable ``rank_features`` name (it reads as
an object path). The exported ``tokenizer.json`` therefore decodes every id to its vocabulary
piece verbatim (a ``Fuse`` decoder) with ``.`` replaced by a character that occurs in no piece
(e.g. ``∙``). Both zips carry the same tokenizer, so documents, queries and ``idf.json`` agree;
`opensearch_token` gives the same mapping for hand-written ``query_tokens``. Tokenisation
(encoding) is untouched. Not verified against a live cluster here (no network).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from korag import atomic
from korag.errors import ConfigError, ModelError
from korag.retrieval.pruning import check_prune
from korag.util.hashing import file_sha256

DOT_REPLACEMENTS = ("∙", "·", "•", "⁘", "⸱", "․")
MAX_QUERY_WEIGHT = 64.0  # Lucene FeatureField's largest weight


@dataclass
class OpenSearchExport:
    """Files written by `export_opensearch`."""

    output: Path
    encoder_zip: Path
    encoder_config: Path
    tokenizer_zip: Path | None = None
    tokenizer_config: Path | None = None
    dot_replacement: str = ""
    files: list[Path] = field(default_factory=list)


def choose_dot_replacement(pieces: list[str]) -> str:
    """A stand-in for ``.`` that no vocabulary piece contains (so no two tokens collide)."""
    used = set("".join(pieces))
    for c in DOT_REPLACEMENTS:
        if c not in used:
            return c
    raise ModelError("every candidate replacement for '.' occurs in the vocabulary")


def opensearch_token(piece: str, dot_replacement: str) -> str:
    """The string OpenSearch sees for a vocabulary piece, with the exported tokenizer."""
    return piece.replace(".", dot_replacement)


def opensearch_tokenizer_json(tokenizer, *, max_length: int, dot_replacement: str) -> dict[str, Any]:
    """The model's ``tokenizer.json`` with a verbatim-piece decoder and truncation set."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        path = Path(tmp) / "tokenizer.json"
        if not path.is_file():
            raise ModelError("the model's tokenizer has no tokenizer.json (a fast tokenizer is required)")
        spec = json.loads(path.read_text(encoding="utf-8"))
    spec["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "."}, "content": dot_replacement},
            {"type": "Fuse"},
        ],
    }
    spec["truncation"] = {"direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
    spec["padding"] = None
    return spec


class _TraceWrapper:
    @staticmethod
    def make(hf, head):
        import torch

        class SparseEncoding(torch.nn.Module):
            """input dict → {"output": batch × vocab non-negative weights}."""

            def __init__(self) -> None:
                super().__init__()
                self.encoder = hf
                self.head = head

            def forward(self, input: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                ids = input["input_ids"]
                mask = input["attention_mask"]
                hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                out = self.head({"token_embeddings": hidden, "attention_mask": mask, "input_ids": ids})
                return {"output": out["sentence_embedding"]}

        return SparseEncoding()


def trace_encoder(model, example_texts: list[str], max_length: int):
    """TorchScript of the document encoder (transformer + sparse head)."""
    import torch

    from korag.models.sparse import document_tokenizer, sparse_head, transformer_model

    hf = transformer_model(model)
    hf.eval()
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")  # SDPA's dispatch does not trace into a portable graph
    wrapper = _TraceWrapper.make(hf, sparse_head(model)).eval()
    tok = document_tokenizer(model)
    enc = tok(example_texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    example = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, example_inputs=(example,), strict=False, check_trace=False)
    return traced, wrapper


def _zip(path: Path, members: dict[str, Path | bytes]) -> None:
    with atomic.atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, src in members.items():
            if isinstance(src, bytes):
                z.writestr(name, src)
            else:
                z.write(src, arcname=name)


def _register_config(name: str, version: str, function: str, zip_path: Path, description: str, extra: dict) -> dict:
    return {
        "name": name,
        "version": version,
        "description": description,
        "model_format": "TORCH_SCRIPT",
        "function_name": function,
        "model_content_size_in_bytes": zip_path.stat().st_size,
        "model_content_hash_value": file_sha256(zip_path),
        **extra,
    }


def export_opensearch(
    model_dir: str | Path,
    output: str | Path,
    *,
    name: str | None = None,
    version: str = "1.0.0",
    max_length: int = 512,
    field_name: str = "passage_embedding",
    text_field: str = "passage_text",
    prune_type: str = "max_ratio",
    prune_ratio: float | None = 0.1,
    overwrite: bool = False,
) -> OpenSearchExport:
    """Write the ML Commons zips and configs, index mapping, ingest pipeline and query examples."""
    from korag.models.sparse import document_tokenizer, load_sparse_encoder

    check_prune(prune_type, prune_ratio)
    model = load_sparse_encoder(model_dir)
    info = model.korag_info
    tok = document_tokenizer(model)
    limit = min(max_length, model.max_seq_length or max_length)
    name = name or Path(model_dir).resolve().name
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"model name {name!r}: use letters, digits, '-' and '_'")
    vocab = tok.get_vocab()
    pieces = [""] * len(vocab)
    for piece, i in vocab.items():
        pieces[i] = piece
    dot = choose_dot_replacement(pieces)
    spec = opensearch_tokenizer_json(tok, max_length=limit, dot_replacement=dot)
    tokenizer_bytes = json.dumps(spec, ensure_ascii=False).encode("utf-8")

    traced, _ = trace_encoder(model, ["가나다라 마바사. 문서 예시입니다.", "짧은 문장"], limit)
    with atomic.atomic_directory(output, overwrite=overwrite) as tmp:
        pt = tmp / f"{name}.pt"
        traced.save(str(pt))
        enc_zip = tmp / f"{name}-{version}-torch_script.zip"
        _zip(enc_zip, {f"{name}.pt": pt, "tokenizer.json": tokenizer_bytes})
        pt.unlink()
        # no model_config: ML Commons refuses it for sparse models (it describes text embedders)
        enc_cfg = _register_config(
            name,
            version,
            "SPARSE_ENCODING",
            enc_zip,
            f"korag {info.mode} sparse encoder ({'expansion' if info.expansion else 'token weighting'})",
            {},
        )
        enc_cfg_path = tmp / "ml-commons_model_config.json"
        atomic.write_json(enc_cfg_path, enc_cfg)
        tzip = tcfg_path = None
        query_model = {"model_id": "<sparse encoder model_id>"}
        if info.mode == "doc-only":
            tzip, tcfg_path = _write_query_tokenizer(tmp, model, name, version, pieces, dot, tokenizer_bytes)
            query_model = {"model_id": "<sparse tokenizer model_id>"}
        _write_request_bodies(tmp, tok, name, field_name, text_field, prune_type, prune_ratio, dot, query_model)
        atomic.write_json(
            tmp / "export.json",
            {
                "model_dir": str(Path(model_dir).resolve()),
                "mode": info.mode,
                "vocab_size": info.vocab_size,
                "dot_replacement": dot,
                "max_length": limit,
            },
        )
        files = sorted(p.relative_to(tmp) for p in tmp.iterdir())
    out = Path(output)  # the files were written in a temporary directory renamed to `out`
    return OpenSearchExport(
        output=out,
        encoder_zip=out / enc_zip.name,
        encoder_config=out / enc_cfg_path.name,
        tokenizer_zip=out / tzip.name if tzip else None,
        tokenizer_config=out / tcfg_path.name if tcfg_path else None,
        dot_replacement=dot,
        files=files,
    )


def _write_query_tokenizer(
    tmp: Path, model: Any, name: str, version: str, pieces: list[str], dot: str, tokenizer_bytes: bytes
) -> tuple[Path, Path]:
    """A doc-only model's query side for ML Commons: the tokenizer and its IDF weights, zipped and
    described by a SPARSE_TOKENIZE register config. Returns (zip, config) paths inside `tmp`."""
    from korag.models.sparse import query_weights

    weights = query_weights(model)
    # Lucene's feature queries take weights in (0, 64]: one factor keeps every ranking
    weights = weights * min(1.0, MAX_QUERY_WEIGHT / max(float(weights.max()), 1e-12))
    idf = {opensearch_token(pieces[i], dot): float(w) for i, w in enumerate(weights.tolist()) if w > 0}
    tzip = tmp / f"{name}-tokenizer-{version}.zip"
    _zip(tzip, {"tokenizer.json": tokenizer_bytes, "idf.json": json.dumps(idf, ensure_ascii=False).encode()})
    tcfg = _register_config(
        f"{name}-tokenizer", version, "SPARSE_TOKENIZE", tzip, "korag doc-only query tokenizer (IDF)", {}
    )
    tcfg_path = tmp / "ml-commons_tokenizer_config.json"
    atomic.write_json(tcfg_path, tcfg)
    return tzip, tcfg_path


def _write_request_bodies(
    tmp: Path,
    tok: Any,
    name: str,
    field_name: str,
    text_field: str,
    prune_type: str,
    prune_ratio: float | None,
    dot: str,
    query_model: dict[str, str],
) -> None:
    """The index mapping, ingest pipeline and two example `neural_sparse` queries (by text through
    the registered model, and by tokens as a client that encodes queries itself would send)."""
    mapping = {
        "settings": {"default_pipeline": f"{name}-ingest"},
        "mappings": {"properties": {text_field: {"type": "text"}, field_name: {"type": "rank_features"}}},
    }
    processor: dict[str, Any] = {"model_id": "<sparse encoder model_id>", "field_map": {text_field: field_name}}
    if prune_type != "none":
        processor.update(prune_type=prune_type, prune_ratio=prune_ratio)
    pipeline = {"description": f"{name}: sparse encoding", "processors": [{"sparse_encoding": processor}]}
    query = {"query": {"neural_sparse": {field_name: {"query_text": "대한민국의 수도는?", **query_model}}}}
    example_tokens = tok.convert_ids_to_tokens(tok("대한민국의 수도는?", add_special_tokens=False)["input_ids"])
    query_tokens = {opensearch_token(t, dot): 1.0 for t in example_tokens}
    tokens_query = {"query": {"neural_sparse": {field_name: {"query_tokens": query_tokens}}}}
    atomic.write_json(tmp / "index_mapping.json", mapping)
    atomic.write_json(tmp / "ingest_pipeline.json", pipeline)
    atomic.write_json(tmp / "neural_sparse_query.json", query)
    atomic.write_json(tmp / "neural_sparse_query_tokens.json", tokens_query)


def decode_like_opensearch(tokenizer_json: dict | str | Path, ids: list[int]) -> list[str]:
    """Decode single ids with an exported ``tokenizer.json`` as ML Commons does (specials skipped)."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer_json, dict):
        t = Tokenizer.from_str(json.dumps(tokenizer_json))
    else:
        t = Tokenizer.from_file(str(tokenizer_json))
    return [t.decode([i], skip_special_tokens=True) for i in ids]
