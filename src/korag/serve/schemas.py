"""Request and response bodies of the HTTP API (pydantic: validated on the way in, documented in
OpenAPI at ``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Retriever = Literal["bm25", "dense", "sparse", "hybrid"]


class ServeSettings(BaseModel):
    """How `korag serve` runs: where it listens, who may write, and the limits it enforces."""

    host: str = Field("127.0.0.1", description="interface to bind (0.0.0.0 exposes it to the network)")
    port: int = Field(8000, ge=0, le=65535)
    api_key: str | None = Field(
        None,
        description="required on every request when set (also from KORAG_API_KEY); without it, writes need "
        "the key generated at start and printed",
    )
    max_upload_mb: float = Field(50, gt=0, description="largest upload (all files of one request)")
    max_query_chars: int = Field(1000, gt=0, description="longest query or question")
    max_k: int = Field(50, gt=0, description="most results per query")
    max_batch: int = Field(64, gt=0, description="most queries in one batch search")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (none by default)")


class SearchRequest(BaseModel):
    """One query."""

    query: str = Field(min_length=1, description="the query (Korean or any language)")
    retriever: Retriever | None = Field(None, description="default: the collection's")
    k: int = Field(10, ge=1, description="results to return (capped by the server's max_k)")
    weights: list[float] | None = Field(None, description="hybrid: fusion weights in member order (weighted fusion)")
    rerank: bool | None = Field(
        None, description="reorder with the collection's cross-encoder (default: when the collection has one)"
    )


class BatchSearchRequest(BaseModel):
    """Several queries searched together."""

    queries: list[str] = Field(min_length=1)
    retriever: Retriever | None = None
    k: int = Field(10, ge=1)
    weights: list[float] | None = None
    rerank: bool | None = Field(
        None, description="reorder with the collection's cross-encoder (default: when the collection has one)"
    )


class SegmentOut(BaseModel):
    """A run of an excerpt; `mark` when it is one of the query's terms."""

    text: str
    mark: bool = False


class HitOut(BaseModel):
    """One passage in the results."""

    rank: int
    id: str
    score: float
    document: str
    file: str
    pages: list[int]
    title: str
    text: str
    excerpt: list[SegmentOut]
    char_start: int | None = None
    char_end: int | None = None


class SearchResponse(BaseModel):
    """Results of one query."""

    query: str
    retriever: str
    results: list[HitOut]
    seconds: float


class BatchSearchResponse(BaseModel):
    """Results of each query, in order."""

    retriever: str
    results: list[SearchResponse]


class AskRequest(BaseModel):
    """A question to answer from the collection."""

    question: str = Field(min_length=1)
    k: int | None = Field(None, ge=1, description="passages to read (default: the server's ask setting)")
    retriever: Retriever | None = None
    rerank: bool | None = Field(
        None, description="reorder with the collection's cross-encoder (default: when the collection has one)"
    )
    stream: bool = Field(False, description="answer as server-sent events: sources, token…, answer")


class TextDocument(BaseModel):
    """A document given as text."""

    id: str = Field(min_length=1, max_length=255, description="its name in the collection")
    text: str = Field(min_length=1)
    title: str = ""


class TextDocuments(BaseModel):
    """Documents to add as JSON (files go as multipart/form-data instead)."""

    documents: list[TextDocument] = Field(min_length=1)


class ErrorOut(BaseModel):
    """What went wrong, in a sentence a person can act on."""

    error: str
    detail: Any = None
