"""The HTTP API and web page of `korag serve`: collections searched, asked, added to and removed
from over HTTP (FastAPI; OpenAPI docs at ``/docs``).

Concurrency: every endpoint that touches a model or an index is a plain function, which FastAPI
runs in its thread pool, so searches run side by side and a slow answer does not hold up a
search. Each search reads one published generation of its collection (`Collection` swaps them
whole), so a search during an add sees the collection before or after it. Writes go through the
collection's writer lock. One reader (LLM) serves every collection; answers take turns on it, as
a small model on a CPU gains nothing from interleaving.

Security: it binds 127.0.0.1 unless told otherwise. With ``--api-key`` (or ``KORAG_API_KEY``)
every request but ``/health`` needs the key; without one, reads are open and writes need a key
generated at start (printed, and put in the web page's URL). Uploads are capped in size and
type, and an upload's file name is reduced to its last component, so it never becomes a path.
Queries, k and batches are capped. CORS is off unless origins are named.
"""

from __future__ import annotations

import hmac
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from korag import __version__
from korag.collections.config import AskSettings
from korag.collections.store import AddReport, Collection
from korag.data.folder import DOCUMENT_SUFFIXES
from korag.data.schema import Document
from korag.errors import KoragError
from korag.retrieval.hits import Hit
from korag.serve.schemas import (
    AskRequest,
    BatchSearchRequest,
    BatchSearchResponse,
    ErrorOut,
    HitOut,
    SearchRequest,
    SearchResponse,
    SegmentOut,
    ServeSettings,
    TextDocuments,
)
from korag.text.highlight import excerpt, query_terms

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_CHUNK = 1 << 20


class Server:
    """What the endpoints share: the collections, the settings, the reader and the metrics."""

    def __init__(
        self,
        collections: Mapping[str, Collection],
        settings: ServeSettings,
        ask: AskSettings,
        write_key: str | None,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.collections = dict(collections)
        self.settings = settings
        self.ask = ask
        self.write_key = write_key
        self._reader = None
        self._reader_lock = threading.Lock()  # loading it once
        self.answering = threading.Lock()  # answers take turns on the one reader
        self.registry = CollectorRegistry()  # per app: tests start several
        self.requests = Counter(
            "korag_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "korag_request_seconds",
            "time to the response's first byte",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )

    def collection(self, name: str) -> Collection:
        """The served collection `name`, or a 404 naming the ones there are."""
        if name not in self.collections:
            served = ", ".join(sorted(self.collections)) or "none"
            raise HTTPException(404, f"no collection {name!r} on this server (it serves: {served})")
        return self.collections[name]

    def authorize(self, request: Request, *, write: bool) -> None:
        """401 unless the request carries the key this request needs (if any)."""
        key = self.settings.api_key or (self.write_key if write else None)
        if key is None:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not hmac.compare_digest(given.encode(), key.encode()):
            what = "every request" if self.settings.api_key else "changes"
            raise HTTPException(
                401, f"this server needs its API key for {what}: send 'Authorization: Bearer KEY' (or X-API-Key)"
            )

    def reader(self):
        """The reader of the ask settings, loaded on first use."""
        with self._reader_lock:
            if self._reader is None:
                from korag.collections.ask import make_reader

                a = self.ask
                self._reader = make_reader(a.reader, style=a.style, max_tokens=a.max_tokens, model_name=a.model_name)
            return self._reader

    def check_query(self, text: str, k: int) -> None:
        """422 for a query or k beyond the server's caps."""
        s = self.settings
        if len(text) > s.max_query_chars:
            raise HTTPException(
                422, f"the query has {len(text)} characters; this server takes at most {s.max_query_chars}"
            )
        if k > s.max_k:
            raise HTTPException(422, f"k={k} is more than this server returns ({s.max_k})")


def _hit(h: Hit, terms: list[str]) -> HitOut:
    return HitOut(
        rank=h.rank,
        id=h.id,
        score=h.score,
        document=str(h.meta.get("document") or h.file),
        file=h.file,
        pages=h.pages,
        title=h.title,
        text=h.text,
        excerpt=[SegmentOut(text=s.text, mark=s.mark) for s in excerpt(h.text, terms)],
        char_start=h.meta.get("char_start"),
        char_end=h.meta.get("char_end"),
    )


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(
    collections: Mapping[str, Collection],
    settings: ServeSettings | None = None,
    ask: AskSettings | None = None,
    *,
    write_key: str | None = None,
) -> FastAPI:
    """The app serving `collections` (name → opened collection)."""
    settings = settings or ServeSettings()
    server = Server(collections, settings, ask or AskSettings(), write_key)
    app = FastAPI(
        title="korag",
        version=__version__,
        description="Search and ask your document collections.",
        responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    app.state.korag = server
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    _add_handlers(app, server)
    _add_read_routes(app, server)
    _add_search_routes(app, server)
    _add_write_routes(app, server)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_handlers(app: FastAPI, server: Server) -> None:
    @app.middleware("http")
    async def _metrics(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        server.requests.labels(request.method, path, str(response.status_code)).inc()
        server.latency.labels(request.method, path).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(KoragError)
    async def _korag_error(request: Request, exc: KoragError):
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems), "detail": exc.errors()}, status_code=422)


def _add_read_routes(app: FastAPI, server: Server) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the server answers and which collections it serves."""
        return {"status": "ok", "version": __version__, "collections": sorted(server.collections)}

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        """Request counts and latency histograms (Prometheus text format)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        server.authorize(request, write=False)
        return Response(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/collections")
    def list_collections(request: Request) -> list[dict[str, Any]]:
        """The served collections with their counts and retrievers."""
        server.authorize(request, write=False)
        return [{k: v for k, v in c.info().items() if k != "path"} for c in server.collections.values()]

    @app.get("/collections/{name}")
    def collection_info(name: str, request: Request) -> dict[str, Any]:
        """A collection: counts, retrievers, models, settings and its documents."""
        server.authorize(request, write=False)
        c = server.collection(name)
        info = {k: v for k, v in c.info().items() if k != "path"}
        cfg = c.config
        info["models"] = {
            "dense": cfg.dense.model if cfg.dense else None,
            "sparse": cfg.sparse.model if cfg.sparse else None,
            "reader": server.ask.reader,
        }
        info["document_list"] = [{k: v for k, v in d.to_dict().items() if k != "path"} for d in c.documents()]
        return info


def _add_search_routes(app: FastAPI, server: Server) -> None:
    @app.post("/collections/{name}/search", response_model=SearchResponse)
    def search(name: str, body: SearchRequest, request: Request) -> SearchResponse:
        """The top-k passages for a query, with document, pages, score and the query's terms marked."""
        server.authorize(request, write=False)
        c = server.collection(name)
        server.check_query(body.query, body.k)
        t0 = time.perf_counter()
        hits = c.search(body.query, body.k, retriever=body.retriever, weights=body.weights, rerank=body.rerank)
        terms = query_terms(body.query)
        return SearchResponse(
            query=body.query,
            retriever=c.config.resolve(body.retriever),
            results=[_hit(h, terms) for h in hits],
            seconds=time.perf_counter() - t0,
        )

    @app.post("/collections/{name}/search/batch", response_model=BatchSearchResponse)
    def batch_search(name: str, body: BatchSearchRequest, request: Request) -> BatchSearchResponse:
        """Several queries at once (one encoding batch for dense and sparse retrievers)."""
        server.authorize(request, write=False)
        c = server.collection(name)
        if len(body.queries) > server.settings.max_batch:
            raise HTTPException(
                422, f"{len(body.queries)} queries; this server takes at most {server.settings.max_batch}"
            )
        for q in body.queries:
            server.check_query(q, body.k)
        t0 = time.perf_counter()
        all_hits = c.batch_search(
            body.queries, body.k, retriever=body.retriever, weights=body.weights, rerank=body.rerank
        )
        seconds = (time.perf_counter() - t0) / len(body.queries)
        kind = c.config.resolve(body.retriever)
        return BatchSearchResponse(
            retriever=kind,
            results=[
                SearchResponse(
                    query=q, retriever=kind, results=[_hit(h, query_terms(q)) for h in hits], seconds=seconds
                )
                for q, hits in zip(body.queries, all_hits, strict=True)
            ],
        )

    @app.post("/collections/{name}/ask")
    def ask(name: str, body: AskRequest, request: Request):
        """An answer citing its passages as [n]; with ``stream``, server-sent events: ``sources``,
        then ``token`` pieces, then ``answer`` (or ``error``)."""
        server.authorize(request, write=False)
        c = server.collection(name)
        k = body.k or server.ask.k
        server.check_query(body.question, k)
        reader = server.reader()
        pending = c.ask_stream(
            body.question,
            k=k,
            retriever=body.retriever or server.ask.retriever,
            reader=reader,
            rerank=body.rerank,
        )
        if not body.stream:
            with server.answering:
                return pending.result().to_dict()

        def events() -> Iterator[str]:
            yield _sse("sources", {"sources": pending_sources(pending)})
            try:
                with server.answering:
                    for piece in pending:
                        yield _sse("token", {"text": piece})
                yield _sse("answer", pending.result().to_dict())
            except KoragError as exc:
                yield _sse("error", {"error": str(exc)})

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def pending_sources(pending) -> list[dict[str, Any]]:
    """The numbered sources of an answer being generated (as the final answer lists them)."""
    terms = query_terms(pending.question)
    return [{"n": i, **_hit(h, terms).model_dump()} for i, h in enumerate(pending.sources, start=1)]


def _add_write_routes(app: FastAPI, server: Server) -> None:
    @app.post("/collections/{name}/documents")
    async def add_documents(name: str, request: Request) -> JSONResponse:
        """Add documents: files as multipart/form-data (field ``files``), or JSON
        ``{"documents": [{"id", "text", "title"}]}``. Answers with what was added, replaced,
        left unchanged and skipped (with reasons)."""
        server.authorize(request, write=True)
        c = server.collection(name)
        limit = int(server.settings.max_upload_mb * 1_000_000)
        declared = int(request.headers.get("content-length") or 0)
        if declared > limit:
            raise HTTPException(
                413, f"the upload is {declared / 1e6:.1f} MB; this server takes at most {limit / 1e6:.0f} MB"
            )
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            body = TextDocuments.model_validate_json(await _read_limited(request, limit))
            docs = [Document(d.id, d.text, d.title) for d in body.documents]
            report = await run_in_threadpool(c.add_texts, docs)
        elif ctype.startswith("multipart/form-data"):
            report = await _add_uploads(c, request, limit)
        else:
            raise HTTPException(415, "send files as multipart/form-data (field 'files') or JSON {'documents': [...]}")
        status = 422 if report.skipped and not (report.changed or report.unchanged) else 200
        return JSONResponse(report.to_dict(), status_code=status)

    @app.delete("/collections/{name}/documents/{doc_id:path}")
    def remove_document(name: str, doc_id: str, request: Request) -> dict[str, Any]:
        """Remove a document and all its passages from every index."""
        server.authorize(request, write=True)
        c = server.collection(name)
        report = c.remove([doc_id])
        if report.missing:
            raise HTTPException(404, f"no document {doc_id!r} in collection {name!r}")
        return report.to_dict()


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, or 413 once it passes `limit` bytes (a body need not declare its size)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HTTPException(413, f"the request body is over this server's {limit / 1e6:.0f} MB limit")
    return bytes(data)


def safe_name(filename: str | None) -> str | None:
    """An upload's file name reduced to its last component, or None when nothing usable is
    left (empty, hidden, '..'): it names the document and never becomes a path."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name.strip()
    if not name or name.startswith(".") or name in ("..",) or "\x00" in name:
        return None
    return name


async def _add_uploads(c: Collection, request: Request, limit: int) -> AddReport:
    """Save the uploaded files into a private temporary folder (checked names and types, size
    counted as they are copied) and add them."""
    form = await request.form(max_files=1000)
    rejected: list[tuple[str, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="korag-upload-") as tmp:
            paths: list[Path] = []
            total = 0
            for upload in form.getlist("files"):
                if isinstance(upload, str):
                    continue
                name = safe_name(upload.filename)
                if name is None or Path(name).suffix.lower() not in DOCUMENT_SUFFIXES:
                    why = f"korag reads {', '.join(DOCUMENT_SUFFIXES)} files" if name else "no usable file name"
                    rejected.append((str(upload.filename), why))
                    continue
                target = Path(tmp) / name
                if target.exists():
                    rejected.append((name, "uploaded twice in one request"))
                    continue
                with target.open("wb") as fh:
                    while chunk := await upload.read(_CHUNK):
                        total += len(chunk)
                        if total > limit:
                            raise HTTPException(413, f"the upload is over this server's {limit / 1e6:.0f} MB limit")
                        fh.write(chunk)
                paths.append(target)
            if not paths and not rejected:
                raise HTTPException(422, "no files in the upload (send them in the form field 'files')")
            report = await run_in_threadpool(c.add, paths, origin="upload", workers=1) if paths else AddReport()
    finally:
        await form.close()
    report.skipped[:0] = rejected
    return report
