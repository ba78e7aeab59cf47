"""What a collection is made of, chosen when it is created: how documents are cut into
passages and which retrievers index them."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from korag.data.chunk import ChunkConfig
from korag.errors import ConfigError
from korag.text.tokenize import DEFAULT_TOKENIZER
from korag.util.config import StrictModel

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BM25Settings(StrictModel):
    """The BM25 index every collection has."""

    tokenizer: str = Field(DEFAULT_TOKENIZER, description="BM25 tokenizer: bigram-stem | kiwi | mecab | bigram | …")
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)


class DenseSettings(StrictModel):
    """A dense retriever: the encoder and how it encodes."""

    model: str = Field(
        description="dense model: e5-small (multilingual-e5-small, built offline), a sentence-transformers "
        "directory, or a hub id"
    )
    batch_size: int = Field(32, gt=0)
    max_seq_length: int | None = Field(None, gt=8)
    precision: Literal["auto", "fp32", "bf16"] = "auto"


class SparseSettings(StrictModel):
    """A learned sparse retriever (a korag sparse model directory)."""

    model: str = Field(description="learned sparse model: a korag sparse model directory (korag train sparse)")
    batch_size: int = Field(16, gt=0)


class FusionSettings(StrictModel):
    """How the hybrid combines its members."""

    method: Literal["rrf", "weighted", "adaptive"] = Field(
        "rrf", description="hybrid fusion: rrf | weighted | adaptive (fitted by `korag collection tune`)"
    )
    weights: list[float] | None = None
    rrf_k: int = Field(60, gt=0)
    combiner: dict[str, Any] | None = Field(
        None, description="adaptive: the fitted combiner (korag.retrieval.adaptive), written by tuning"
    )

    @model_validator(mode="after")
    def _adaptive_needs_combiner(self) -> FusionSettings:
        if self.method == "adaptive" and self.combiner is None:
            raise ValueError("adaptive fusion is fitted on your questions: korag collection tune NAME QUESTIONS.jsonl")
        return self


class RerankSettings(StrictModel):
    """A cross-encoder that reorders the retriever's first candidates on every search and ask."""

    model: str = Field(description="a reranker directory (korag train reranker's output, or its model/)")
    k: int = Field(30, gt=0, description="the retriever's candidates the cross-encoder reorders")
    blend: float = Field(
        0.0, ge=0, le=1, description="weight of the retriever's own score mixed into the cross-encoder's (0: none)"
    )
    windows: Literal["best", "first"] = Field(
        "best", description="a passage longer than the input: best (its window sharing most with the query) | first"
    )
    batch_size: int = Field(32, gt=0)


class EngineSettings(StrictModel):
    """Where the indexes live: embedded (files in the collection's directory) or a Milvus
    server. The token of a secured Milvus is read from an environment variable, never stored."""

    kind: Literal["embedded", "milvus"] = Field("embedded", description="embedded | milvus")
    uri: str | None = Field(None, description="milvus: a Milvus Lite file (./korag.db) or a server (http://host:19530)")
    token_env: str = Field("MILVUS_TOKEN", description="milvus: the environment variable holding the token, if any")
    collection: str | None = Field(None, description="milvus: the Milvus collection [default: from the name]")


class CollectionConfig(StrictModel):
    """A collection's settings: its name, the passages and the retrievers."""

    name: str = Field(description="letters, digits, '-', '_' or '.'")
    chunk: ChunkConfig = ChunkConfig()
    with_title: bool = Field(True, description="index each passage with its document's title")
    bm25: BM25Settings = BM25Settings()
    dense: DenseSettings | None = None
    sparse: SparseSettings | None = None
    fusion: FusionSettings = FusionSettings()
    rerank: RerankSettings | None = None
    engine: EngineSettings = EngineSettings()
    default_retriever: Literal["auto", "bm25", "dense", "sparse", "hybrid"] = Field(
        "auto", description="bm25 | dense | sparse | hybrid | auto (the hybrid of all, or BM25 when alone)"
    )

    @model_validator(mode="after")
    def _engine_has_a_place(self) -> CollectionConfig:
        if self.engine.kind == "milvus" and not self.engine.uri:
            raise ValueError("engine.uri: a Milvus engine needs a Lite file (./korag.db) or a server URL")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r}: a collection name is 1-64 letters, digits, '-', '_' or '.'")
        return v

    def retrievers(self) -> list[str]:
        """The retrievers the collection indexes with."""
        return ["bm25", *(["dense"] if self.dense else []), *(["sparse"] if self.sparse else [])]

    def resolve(self, retriever: str | None) -> str:
        """The retriever a search uses (`retriever` or the default), checked against what exists."""
        kind = retriever or self.default_retriever
        if kind == "auto":
            kind = "hybrid" if len(self.retrievers()) > 1 else "bm25"
        available = [*self.retrievers(), *(["hybrid"] if len(self.retrievers()) > 1 else [])]
        if kind not in available:
            raise ConfigError(f"collection {self.name!r} has no {kind} retriever (it has: {', '.join(available)})")
        return kind


PromptStyle = Literal["auto", "completion", "chat"]


class AskSettings(StrictModel):
    """How `korag ask` (and `Collection.ask`, the server's /ask) answers."""

    reader: str = Field(
        "gemma3-270m",
        description="gemma3-270m (offline), a model directory or .gguf, llamacpp:FILE, an http(s):// "
        "OpenAI-compatible URL (vLLM, llama.cpp server), or clara:DIR (a trained CLaRa model)",
    )
    # 3, not 5: Gemma 3 270M reads a 3-passage prompt (~1,500 tokens) in ~3 s on 2 cores with bf16
    # (18 s on 2 cores without: bench/documents.py)
    k: int = Field(3, ge=1, description="passages to retrieve and read")
    retriever: Literal["bm25", "dense", "sparse", "hybrid"] | None = Field(
        None, description="bm25 | dense | sparse | hybrid [default: the collection's]"
    )
    style: PromptStyle = Field("auto", description="prompt style: auto | completion (base models) | chat")
    max_tokens: int = Field(128, ge=1, description="longest answer, in tokens")
    model_name: str | None = Field(None, description="the model name an OpenAI-compatible server expects")
    rerank: str | None = Field(
        None, description="rerank the retriever's candidates with this cross-encoder [default: the collection's]"
    )
    rerank_k: int = Field(30, ge=1, description="candidates the cross-encoder reorders (with rerank)")
