"""`korag llm …` and `korag synth …`: local LLMs and synthetic training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from korag.cli.common import out, require_extra
from korag.errors import ConfigError

llm_app = typer.Typer(help="Run local LLMs.", no_args_is_help=True)
synth_app = typer.Typer(help="Synthesise training data.", no_args_is_help=True)


def _generator(model: str, batch_size: int, cache_dir: Path | None):
    if not model.startswith(("http://", "https://")):
        require_extra("llm", f"the local LLM {model!r}")
    from korag.synth.llm import make_generator

    options = {} if model.startswith(("http://", "https://")) else {"batch_size": batch_size}
    return make_generator(model, cache_dir=cache_dir, **options)


@llm_app.command("serve")
def llm_serve(
    model: Annotated[str, typer.Argument(help="gemma3-270m, a model directory or a .gguf file")] = "gemma3-270m",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8000,
    name: Annotated[str, typer.Option(help="model name reported to clients")] = "korag",
    cache_dir: Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")] = None,
) -> None:
    """Serve a local model over the OpenAI chat/completions API until Ctrl-C."""
    from korag.synth.serve import make_server

    server = make_server(_generator(model, 1, cache_dir), host=host, port=port, model_name=name)
    h, p = server.server_address[:2]
    out.print(f"serving {model} as {name!r} on http://{h}:{p}/v1 (chat/completions, completions, models)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@llm_app.command("generate")
def llm_generate(
    prompt: Annotated[list[str], typer.Argument(help="one or more prompts")],
    model: Annotated[
        str, typer.Option(help="gemma3-270m, a directory, a .gguf file or an http(s) URL")
    ] = "gemma3-270m",
    max_tokens: Annotated[int, typer.Option(help="tokens to generate")] = 64,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    stop: Annotated[list[str] | None, typer.Option(help="stop string (repeatable)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")] = None,
) -> None:
    """Complete prompts with a local or remote model (a quick check of a backend)."""
    from korag.synth.generation import GenerationConfig

    gen = _generator(model, 8, cache_dir)
    texts = gen.generate(list(prompt), GenerationConfig(max_tokens, temperature, top_p, tuple(stop or ()), seed))
    for p, t in zip(prompt, texts, strict=True):
        out.print(f"[bold]{p}[/]{t}", highlight=False)


@synth_app.command("queries")
def synth_queries(
    path: Annotated[str, typer.Argument(help="corpus or QA set (any readable format, or builtin:sample)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="kept synthetic queries (JSONL)")],
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    llm: Annotated[str | None, typer.Option(help="LLM for question/keyword queries (none: LLM-free only)")] = None,
    styles: Annotated[str, typer.Option(help="comma-separated LLM prompt styles")] = "question,keyword",
    per_doc: Annotated[int, typer.Option(help="generations per document and style")] = 1,
    temperature: Annotated[float, typer.Option(help="sampling temperature (0 = greedy)")] = 0.0,
    max_tokens: Annotated[int, typer.Option()] = 32,
    ict: Annotated[bool, typer.Option(help="inverse-cloze queries")] = True,
    keyphrase: Annotated[bool, typer.Option(help="keyphrase queries")] = True,
    filters: Annotated[str, typer.Option(help="comma-separated filters ('' for none)")] = (
        "length,dedup,copy,language,logprob,roundtrip"
    ),
    roundtrip_k: Annotated[int, typer.Option(help="round-trip: source passage within BM25's top k")] = 5,
    negatives: Annotated[int, typer.Option(help="hard negatives per query (BM25) in the pairs file")] = 0,
    pairs: Annotated[Path | None, typer.Option(help="also write training pairs/triplets as JSONL")] = None,
    progress: Annotated[Path | None, typer.Option(help="resumable progress file for LLM generation")] = None,
    batch_size: Annotated[int, typer.Option(help="LLM batch size")] = 16,
    cache_dir: Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")] = None,
) -> None:
    """Generate queries for every passage, filter them and write them (and training pairs)."""
    from korag.data.load import load
    from korag.data.schema import Corpus
    from korag.data.synthetic import SyntheticSet
    from korag.data.training import write_pairs_jsonl
    from korag.eval.tables import filter_steps_table
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.negatives import mine_negatives
    from korag.synth.filters import FilterConfig, apply_filters
    from korag.synth.generation import GenerationConfig
    from korag.synth.prompts import QueryPrompt
    from korag.synth.queries import generate_llm_queries, ict_queries, keyphrase_queries

    data = load(path, format=format, show_progress=True)
    corpus = data if isinstance(data, Corpus) else data.corpus
    queries = []
    if llm:
        gen = _generator(llm, batch_size, cache_dir)
        for i, style in enumerate(s.strip() for s in styles.split(",") if s.strip()):
            prog = progress.with_name(f"{progress.stem}.{style}{progress.suffix}") if progress else None
            cfg = GenerationConfig(max_tokens=max_tokens, temperature=temperature, seed=i)
            got, _ = generate_llm_queries(corpus, gen, QueryPrompt(style), cfg, per_doc=per_doc, progress_file=prog)
            queries += got.queries
    if ict:
        queries += ict_queries(corpus).queries
    if keyphrase:
        queries += keyphrase_queries(corpus).queries
    if not queries:
        raise ConfigError("nothing to generate: give --llm or keep --ict/--keyphrase on")
    everything = SyntheticSet(corpus, queries)
    cfg_f = FilterConfig(enabled=[f.strip() for f in filters.split(",") if f.strip()], roundtrip_k=roundtrip_k)
    bm25 = None
    if "roundtrip" in cfg_f.enabled or negatives:
        bm25 = BM25Retriever("bigram-stem")
        bm25.index(corpus)
    kept, report = apply_filters(everything, cfg_f, retriever=bm25)
    kept.save_jsonl(output)
    out.print(filter_steps_table(report.rows(), list(report.generated)))
    out.print(f"wrote {len(kept)} queries to {output}")
    if pairs:
        negs = None
        if negatives:
            negs, mined = mine_negatives(kept.to_retrieval_set(), bm25, num=negatives)  # type: ignore[arg-type]
            out.print(f"hard negatives: {mined.mined} mined, {mined.short} queries short of {negatives}")
        write_pairs_jsonl(kept.to_training_pairs(negatives=negs), pairs)
        out.print(f"wrote training pairs to {pairs}")
