"""Collections of one's own documents: ``korag collection create/list/info/delete``,
``korag add``, ``korag remove`` and ``korag ask``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from korag.cli.common import ConfigOpt, SetOpt, ShowConfigOpt, config_from, err, flag, out, require_extra
from korag.collections.config import AskSettings, CollectionConfig
from korag.errors import ConfigError

app = typer.Typer(help="Create, list, inspect and delete collections of your documents.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="collection name (or a directory path)")]
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="where named collections live [default: $KORAG_HOME/collections, else ~/.local/share/korag/collections]",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]


def register(root: typer.Typer) -> None:
    """Add ``collection`` and the top-level ``add``, ``remove`` and ``ask``."""
    root.add_typer(app, name="collection")
    root.command("add")(add)
    root.command("remove")(remove)
    root.command("ask")(ask)


def _path(name: str, home: Path | None) -> Path:
    from korag.collections.store import collection_path

    return collection_path(name, home)


def _open(name: str, home: Path | None):
    from korag.collections.store import Collection

    return Collection.open(_path(name, home))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


@app.command("create")
def create(
    name: NameArg,
    dense: flag(str, CollectionConfig, "dense.model", "--dense") = None,
    sparse: flag(str, CollectionConfig, "sparse.model", "--sparse") = None,
    fusion: flag(str, CollectionConfig, "fusion.method", "--fusion") = None,
    weights: Annotated[str | None, typer.Option(help="weighted fusion: weights in member order, e.g. 0.3,0.7")] = None,
    chunk_tokens: flag(int, CollectionConfig, "chunk.max_tokens", "--chunk-tokens") = None,
    chunk_overlap: flag(int, CollectionConfig, "chunk.overlap_tokens", "--chunk-overlap") = None,
    tokenizer: flag(str, CollectionConfig, "bm25.tokenizer", "--tokenizer") = None,
    default_retriever: flag(str, CollectionConfig, "default_retriever", "--default-retriever") = None,
    engine: flag(str, CollectionConfig, "engine.kind", "--engine") = None,
    uri: flag(str, CollectionConfig, "engine.uri", "--uri") = None,
    rerank: flag(str, CollectionConfig, "rerank.model", "--rerank") = None,
    rerank_k: flag(int, CollectionConfig, "rerank.k", "--rerank-k") = None,
    home: HomeOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """Create an empty collection; its retrievers (BM25 always, --dense and --sparse optional)
    and passage settings are fixed here."""
    from korag.collections.store import Collection

    if dense and Path(dense).expanduser().exists():
        dense = str(Path(dense).expanduser().resolve())  # opened later from anywhere
    if sparse and Path(sparse).expanduser().exists():
        sparse = str(Path(sparse).expanduser().resolve())
    if rerank and Path(rerank).expanduser().exists():
        rerank = str(Path(rerank).expanduser().resolve())
    if uri and "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())  # a Lite file, found later from anywhere
    flags = {
        "engine.kind": engine,
        "engine.uri": uri,
        "name": Path(name).name,
        "dense.model": dense,
        "sparse.model": sparse,
        "fusion.method": fusion,
        "fusion.weights": [float(w) for w in weights.split(",")] if weights else None,
        "chunk.max_tokens": chunk_tokens,
        "chunk.overlap_tokens": chunk_overlap,
        "bm25.tokenizer": tokenizer,
        "default_retriever": default_retriever,
        "rerank.model": rerank,
        "rerank.k": rerank_k,
    }
    settings = config_from(CollectionConfig, config=config, sets=set_, flags=flags, show=show_config)
    if settings.dense or settings.sparse:
        require_extra("dense", "a collection with a dense or sparse retriever")
    if settings.engine.kind == "milvus":
        require_extra("milvus", "a collection in Milvus")
    if settings.rerank is not None:
        from korag.retrieval.rerank import check_reranker

        require_extra("dense", "a collection with a reranker")
        check_reranker(settings.rerank.model)
    for kind, s in (("dense", settings.dense), ("sparse", settings.sparse)):
        if s is not None and s.model.startswith((".", "/", "~")) and not Path(s.model).expanduser().is_dir():
            raise ConfigError(f"--{kind} {s.model}: no such model directory")
    root = _path(name, home)
    coll = Collection.create(root, settings)
    coll.close()  # created and checked; a Milvus Lite file is free for the next command
    kinds = ", ".join(settings.retrievers())
    out.print(f"created collection [bold]{escape(coll.name)}[/] at {root} (retrievers: {kinds})")
    out.print(f"next: korag add {escape(name)} FILES_OR_FOLDERS")


@app.command("list")
def list_(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The collections under the home directory."""
    from korag.collections.store import Collection, default_home, list_collections

    infos = [Collection.open(p).info() for p in list_collections(home)]
    if as_json:
        out.print_json(json.dumps([{k: v for k, v in i.items() if k != "config"} for i in infos], ensure_ascii=False))
        return
    if not infos:
        out.print(f"no collections in {home or default_home()} (korag collection create NAME)")
        return
    table = Table(title=f"collections in {home or default_home()}")
    for col in ("name", "documents", "passages", "retrievers", "size"):
        table.add_column(col, justify="right" if col in ("documents", "passages", "size") else "left")
    for i in infos:
        table.add_row(i["name"], str(i["documents"]), str(i["passages"]), ", ".join(i["retrievers"]), _size(i["bytes"]))
    out.print(table)


@app.command("info")
def info(name: NameArg, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A collection's settings and documents."""
    coll = _open(name, home)
    data = coll.info()
    docs = coll.documents()
    if as_json:
        data["document_list"] = [d.to_dict() for d in docs]
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    cfg = coll.config
    out.print(
        f"[bold]{escape(coll.name)}[/] at {data['path']}: {data['documents']} document(s), {data['passages']} "
        f"passage(s), {data['pages']} page(s), {_size(data['bytes'])}; retrievers {', '.join(data['retrievers'])} "
        f"(default: {data['default_retriever']}); passages of {cfg.chunk.max_tokens} words "
        f"({cfg.chunk.overlap_tokens} overlapping)"
    )
    if docs:
        table = Table()
        for col in ("document", "title", "pages", "passages", "added"):
            table.add_column(col, overflow="fold", justify="right" if col in ("pages", "passages") else "left")
        for d in docs:
            thin = f" ({len(d.thin_pages)} without text)" if d.thin_pages else ""
            pages = "" if d.pages is None else f"{d.pages}{thin}"
            table.add_row(d.id, d.title[:60], pages, str(d.passages), d.added.replace("T", " ")[:16])
        out.print(table)


@app.command("delete")
def delete(
    name: NameArg,
    home: HomeOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a collection and everything in it (your files are not touched)."""
    coll = _open(name, home)
    if not yes and not typer.confirm(f"delete collection {coll.name} ({len(coll)} documents) at {coll.root}?"):
        raise typer.Exit(1)
    shutil.rmtree(coll.root)
    out.print(f"deleted collection {escape(coll.name)}")


def add(
    name: NameArg,
    paths: Annotated[list[Path], typer.Argument(help="files and folders (searched recursively)")],
    home: HomeOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="stop at the first input that cannot be read")] = False,
    workers: Annotated[int | None, typer.Option(help="processes reading files [default: one per core]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add documents: new files are added, changed ones replaced, identical ones left alone;
    files that cannot be read are skipped with their reason (exit status 2 when any was)."""
    coll = _open(name, home)
    report = coll.add(paths, strict=strict, workers=workers, show_progress=not as_json)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for file, reason in report.skipped:
            err.print(f"[yellow]skipped[/] {escape(_reason_line(file, reason))}")
        for warning in report.warnings:
            err.print(f"[yellow]warning[/] {escape(warning)}")
        out.print(f"{escape(coll.name)}: {report.summary()}")
        if report.changed:
            out.print(f'next: korag ask {escape(name)} "질문"')
    if report.skipped:
        raise typer.Exit(2)


def _reason_line(file: str, reason: str) -> str:
    """One line naming the file once (a `DataError` already starts with it)."""
    return reason if reason.startswith(file) else f"{file}: {reason}"


def remove(
    name: NameArg,
    documents: Annotated[list[str], typer.Argument(help="document names (file names, as `collection info` lists)")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove documents and all their passages from every index."""
    coll = _open(name, home)
    report = coll.remove(documents)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for doc in report.missing:
            err.print(f"[yellow]not in {escape(coll.name)}:[/] {escape(doc)} (korag collection info {escape(name)})")
        if report.removed:
            out.print(
                f"{escape(coll.name)}: removed {', '.join(report.removed)} ({report.passages_removed} passages); "
                f"{len(coll)} document(s) left"
            )
    if report.missing:
        raise typer.Exit(2)


@app.command("tune")
def tune(
    name: NameArg,
    questions: Annotated[Path, typer.Argument(help="questions with answers (JSONL: question, answers)")],
    home: HomeOpt = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Fit the hybrid's adaptive fusion on your questions (a passage that holds an answer counts
    as relevant) and make it the collection's fusion; prints each member, RRF, weighted and the
    learned fusion side by side (5-fold answer MRR@10) and which one was kept."""
    from korag.collections.evaluate import tune_fusion
    from korag.data.questions import read_questions_jsonl

    qs = read_questions_jsonl(questions)  # a bad file stops before any model loads
    coll = _open(name, home)
    coll.device = device
    combiner = tune_fusion(coll, qs)
    if as_json:
        out.print_json(json.dumps(combiner, ensure_ascii=False))
        return
    members = coll.config.retrievers()
    table = Table(
        title=f"fusion of {coll.name} on {questions} ({combiner['questions']} questions with an answer found)"
    )
    table.add_column("fusion")
    table.add_column("MRR@10 (5-fold)", justify="right")
    for key, value in combiner["cv_mrr@10"].items():
        label = members[int(key.split(":")[1])] + " alone" if key.startswith("member:") else key
        style = "bold" if key == combiner["chosen"] else ""
        table.add_row(label, f"{value:.4f}", style=style)
    out.print(table)
    kept = combiner["chosen"]
    kept = members[int(kept.split(":")[1])] + " alone" if kept.startswith("member:") else kept
    out.print(f"kept: {kept} (saved as {coll.name}'s hybrid fusion)")
    if combiner.get("unanswered"):
        out.print(f"{combiner['unanswered']} question(s) had no passage holding their answer in any member's top 100")


def ask(
    name: NameArg,
    question: Annotated[str, typer.Argument(help="the question")],
    reader: flag(str, AskSettings, "reader", "--reader") = None,
    k: flag(int, AskSettings, "k", "--k", "-k") = None,
    retriever: flag(str, AskSettings, "retriever", "--retriever") = None,
    style: flag(str, AskSettings, "style", "--style") = None,
    max_tokens: flag(int, AskSettings, "max_tokens", "--max-tokens") = None,
    model_name: flag(str, AskSettings, "model_name", "--model-name") = None,
    rerank: flag(str, AskSettings, "rerank", "--rerank") = None,
    rerank_k: flag(int, AskSettings, "rerank_k", "--rerank-k") = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    home: HomeOpt = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="print the answer as it is generated")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from a collection, citing the passages it used as [n]."""
    from korag.collections.store import Collection

    flags = {"reader": reader, "k": k, "retriever": retriever, "style": style, "max_tokens": max_tokens}
    settings = config_from(
        AskSettings, flags={**flags, "model_name": model_name, "rerank": rerank, "rerank_k": rerank_k}
    )
    if settings.rerank is not None:
        from korag.retrieval.rerank import check_reranker

        require_extra("dense", "--rerank")
        check_reranker(settings.rerank)
    if not settings.reader.startswith(("http://", "https://")):
        extra = "memory" if settings.reader.startswith("clara:") else "llm"
        require_extra(extra, f"korag ask --reader {settings.reader}")
    coll = Collection.open(_path(name, home), device=device)
    chosen = coll.reader(
        settings.reader, style=settings.style, max_tokens=settings.max_tokens, model_name=settings.model_name
    )
    pending = coll.ask_stream(
        question, k=settings.k, retriever=settings.retriever, reader=chosen, rerank=_rerank(settings)
    )
    if as_json:
        out.print_json(json.dumps(pending.result().to_dict(), ensure_ascii=False))
        return
    if stream:
        for piece in pending:
            out.print(escape(piece), end="", soft_wrap=True, highlight=False)
        out.print()
    answer = pending.result()
    if not stream:
        out.print(escape(answer.raw), soft_wrap=True, highlight=False)
    out.print()
    for n, hit in enumerate(answer.sources, start=1):
        mark = "[bold]" if n in answer.cited else "[dim]"
        excerpt = " ".join(hit.text.split())[:160]
        out.print(f"{mark}[{n}] {escape(hit.source())}[/] {escape(excerpt)}", highlight=False)
    if answer.invalid_citations:
        err.print(f"[yellow]the answer cites {answer.invalid_citations} source number(s) that do not exist[/]")


def _rerank(settings):
    """The per-call reranker of `AskSettings` (None: the collection's own)."""
    from korag.collections.config import RerankSettings

    return RerankSettings(model=settings.rerank, k=settings.rerank_k) if settings.rerank else None
