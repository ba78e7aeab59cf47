"""`korag llm …` and `korag synth …`: local LLMs and synthetic training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from korag.cli.common import ConfigOpt, SetOpt, ShowConfigOpt, config_from, flag, out, require_extra
from korag.errors import ConfigError
from korag.synth.config import LLMSettings
from korag.training.config import TrainConfigBase

llm_app = typer.Typer(help="Run local LLMs.", no_args_is_help=True)
synth_app = typer.Typer(help="Synthesise training data.", no_args_is_help=True)

# the LLM's everyday settings as flags; every other field through --config / --set (see --show-config)
PromptStyleOpt = flag(str, LLMSettings, "prompt_style", "--prompt-style")
ThinkingOpt = flag(bool, LLMSettings, "thinking", "--thinking/--no-thinking")
QuantizationOpt = flag(str, LLMSettings, "quantization", "--quantization")
DeviceMapOpt = flag(str, LLMSettings, "device_map", "--device-map")
MaxMemoryOpt = flag(str, LLMSettings, "max_memory", "--max-memory")
DeviceOpt = flag(str, LLMSettings, "device", "--device")
DtypeOpt = flag(str, LLMSettings, "dtype", "--dtype")
BatchOpt = flag(int, LLMSettings, "batch_size", "--batch-size")
ConcurrencyOpt = flag(int, LLMSettings, "concurrency", "--concurrency")
ModelNameOpt = flag(str, LLMSettings, "model_name", "--model-name")


def _is_server(spec: str) -> bool:
    return spec.startswith(("http://", "https://", "@")) or "," in spec


def _generator(settings: LLMSettings, cache_dir: Path | None, **options):
    if not _is_server(settings.model):
        require_extra("llm", f"the local LLM {settings.model!r}")
    from korag.synth.llm import make_generator

    return make_generator(cache_dir=cache_dir, settings=settings, **options)


def _print_stats(gen) -> None:
    """Throughput, reasoning removed, invalid JSON and, for several servers, one line each."""
    s = gen.stats
    line = f"{s.prompts} prompts, {s.generated_tokens} tokens, {s.tokens_per_second:.1f} tokens/s"
    if s.reasoning_outputs:
        line += f"; reasoning removed from {s.reasoning_outputs} answers ({s.reasoning_unterminated} unfinished)"
    if s.json_invalid:
        line += f"; {s.json_invalid} answers were not valid JSON"
    out.print(line)
    for row in s.extra.get("endpoints", []):
        out.print(
            f"  {row['url']}: {row['requests']} requests, {row['failures']} failed, {row['tokens']} tokens, "
            f"{row['tokens_per_second']:.1f} tokens/s"
        )
    for stage, peak in s.extra.get("memory", {}).items():
        gpu = f", GPU {peak['gpu_mib']:.0f} MiB" if "gpu_mib" in peak else ""
        out.print(f"  memory {stage}: CPU RSS {peak['cpu_rss_mib']:.0f} MiB{gpu}")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[str | None, typer.Argument(help="gemma3-270m, a model directory or a .gguf file")] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8000,
    name: Annotated[str, typer.Option(help="model name reported to clients")] = "korag",
    quantization: QuantizationOpt = None,
    device_map: DeviceMapOpt = None,
    max_memory: MaxMemoryOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    cache_dir: Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """Serve a local model over the OpenAI chat/completions API until Ctrl-C."""
    flags = {
        "model": model,
        "quantization": quantization,
        "device_map": device_map,
        "max_memory": max_memory,
        "device": device,
        "dtype": dtype,
    }
    settings = config_from(LLMSettings, config=config, sets=set_, flags=flags, show=show_config)
    if _is_server(settings.model):
        raise ConfigError(f"korag llm serve runs a local model, not a server URL ({settings.model})")
    from korag.synth.serve import make_server

    server = make_server(_generator(settings, cache_dir, batch_size=1), host=host, port=port, model_name=name)
    h, p = server.server_address[:2]
    out.print(f"serving {settings.model} as {name!r} on http://{h}:{p}/v1 (chat/completions, completions, models)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@llm_app.command("generate")
def llm_generate(
    prompt: Annotated[list[str], typer.Argument(help="one or more prompts")],
    model: flag(str, LLMSettings, "model", "--model") = None,
    max_tokens: Annotated[int, typer.Option(help="tokens to generate")] = 64,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    stop: Annotated[list[str] | None, typer.Option(help="stop string (repeatable)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    prompt_style: PromptStyleOpt = None,
    thinking: ThinkingOpt = None,
    quantization: QuantizationOpt = None,
    device_map: DeviceMapOpt = None,
    max_memory: MaxMemoryOpt = None,
    batch_size: BatchOpt = None,
    model_name: ModelNameOpt = None,
    cache_dir: Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """Complete prompts with a local or remote model (a quick check of a backend); with a chat
    prompt style each prompt is one user message."""
    from korag.synth.chat import resolve_prompt_style
    from korag.synth.generation import GenerationConfig

    flags = {
        "model": model,
        "prompt_style": prompt_style,
        "thinking": thinking,
        "quantization": quantization,
        "device_map": device_map,
        "max_memory": max_memory,
        "batch_size": batch_size,
        "model_name": model_name,
    }
    settings = config_from(LLMSettings, config=config, sets=set_, flags=flags, show=show_config)
    gen = _generator(settings, cache_dir)
    # `auto` keeps plain completion here: a quick check should show what the model continues
    chat = settings.prompt_style != "auto" and resolve_prompt_style(gen, settings.prompt_style) == "chat"
    prompts = [[{"role": "user", "content": p}] if chat else p for p in prompt]
    cfg = GenerationConfig(max_tokens, temperature, top_p, tuple(stop or ()), seed)
    texts = gen.generate(prompts, cfg)
    for p, t in zip(prompt, texts, strict=True):
        out.print(f"[bold]{p}[/]{' ' if chat else ''}{t}", highlight=False)
    _print_stats(gen)


@synth_app.command("queries")
def synth_queries(
    path: Annotated[str, typer.Argument(help="corpus or QA set (any readable format, or builtin:sample)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="kept synthetic queries (JSONL)")],
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    llm: flag(str, LLMSettings, "model", "--llm", extra="unset: LLM-free queries only", with_default=False) = None,
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
    prompt_style: PromptStyleOpt = None,
    thinking: ThinkingOpt = None,
    json_mode: flag(str, LLMSettings, "json_mode", "--json-mode") = None,
    quantization: QuantizationOpt = None,
    device_map: DeviceMapOpt = None,
    max_memory: MaxMemoryOpt = None,
    batch_size: BatchOpt = None,
    concurrency: ConcurrencyOpt = None,
    model_name: ModelNameOpt = None,
    cache_dir: Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """Generate queries for every passage, filter them and write them (and training pairs).
    Several servers (``--llm URL,URL`` or ``--llm @FILE``) share the generation; --config and
    --set take the LLM's settings.

    \f
    Longer than 80 lines only through its signature: typer declares one parameter per option;
    the body is 63 lines.
    """
    from korag.data.load import load
    from korag.data.schema import Corpus
    from korag.data.synthetic import SyntheticSet
    from korag.data.training import write_pairs_jsonl
    from korag.eval.tables import filter_steps_table
    from korag.retrieval.bm25 import BM25Retriever
    from korag.retrieval.negatives import mine_negatives
    from korag.synth.chat import resolve_prompt_style
    from korag.synth.filters import FilterConfig, apply_filters
    from korag.synth.generation import GenerationConfig
    from korag.synth.prompts import QueryPrompt
    from korag.synth.queries import generate_llm_queries, ict_queries, keyphrase_queries

    flags = {
        "model": llm,
        "prompt_style": prompt_style,
        "thinking": thinking,
        "json_mode": json_mode,
        "quantization": quantization,
        "device_map": device_map,
        "max_memory": max_memory,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "model_name": model_name,
    }
    settings = config_from(LLMSettings, config=config, sets=set_, flags=flags, show=show_config)
    use_llm = llm is not None or "model" in settings.model_fields_set
    data = load(path, format=format, show_progress=True)
    corpus = data if isinstance(data, Corpus) else data.corpus
    queries = []
    if use_llm:
        gen = _generator(settings, cache_dir)
        chat = resolve_prompt_style(gen, settings.prompt_style) == "chat"
        for i, style in enumerate(s.strip() for s in styles.split(",") if s.strip()):
            prog = progress.with_name(f"{progress.stem}.{style}{progress.suffix}") if progress else None
            cfg = GenerationConfig(max_tokens=max_tokens, temperature=temperature, seed=i)
            prompt = QueryPrompt(style, chat=chat, json_output=settings.json_mode == "auto")
            got, _ = generate_llm_queries(corpus, gen, prompt, cfg, per_doc=per_doc, progress_file=prog)
            queries += got.queries
        _print_stats(gen)
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


# -- the generation toolbox: pseudo-documents, paraphrases, written negatives, GPL ----------------

DataPathArg = Annotated[
    str, typer.Argument(help="training queries: a QA set, BEIR data (its --split), a questions JSONL, builtin:sample")
]
ToolOutputOpt = Annotated[Path, typer.Option("--output", "-o", help="what is kept (JSONL); counts beside it")]
SplitOpt = Annotated[str, typer.Option(help="BEIR split to read the queries of")]
ProgressOpt = Annotated[Path | None, typer.Option(help="resumable progress file (raw LLM outputs per query)")]
TemperatureOpt = Annotated[float, typer.Option(help="sampling temperature (0 = greedy)")]
LimitOpt = Annotated[int | None, typer.Option(help="only the first N queries (a quick look)")]
CacheOpt = Annotated[Path | None, typer.Option(help="where converted GGUF models are kept")]


def _training_queries(path: str, format: str, split: str, limit: int | None):
    """(query items, corpus or None) from a QA set, BEIR data or a questions file."""
    from korag.data.load import load
    from korag.data.questions import looks_like_questions, read_questions_jsonl
    from korag.data.schema import Corpus
    from korag.synth.toolbox import query_items

    if format == "auto" and looks_like_questions(path):
        items, corpus = query_items(read_questions_jsonl(path)), None
    else:
        data = load(path, format=format, split=split, show_progress=True)
        if isinstance(data, Corpus):
            raise ConfigError(
                f"{path} holds passages but no queries: give a QA set, BEIR data or a questions JSONL "
                "(korag synth queries makes queries for passages)"
            )
        items, corpus = query_items(data), data.corpus
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1 (got {limit})")
        items = items[:limit]
    if not items:
        raise ConfigError(f"{path}: no queries")
    return items, corpus


def _tool_llm(llm, prompt_style, json_mode, model_name, concurrency, batch_size, cache_dir, config, set_, show_config):
    """The generator and whether it takes chat prompts (with JSON answers) for a toolbox command."""
    from korag.synth.chat import resolve_prompt_style

    flags = {
        "model": llm,
        "prompt_style": prompt_style,
        "json_mode": json_mode,
        "model_name": model_name,
        "concurrency": concurrency,
        "batch_size": batch_size,
    }
    settings = config_from(LLMSettings, config=config, sets=set_, flags=flags, show=show_config)
    gen = _generator(settings, cache_dir)
    chat = resolve_prompt_style(gen, settings.prompt_style) == "chat"
    return gen, chat, settings.json_mode == "auto"


def _finish_tool(report, records, output: Path, gen, *, write=None) -> None:
    """Print the counts (a table: outputs left after each filter), save them beside the output
    and write the kept records."""
    from rich.table import Table

    from korag import atomic
    from korag.synth.toolbox import report_path, write_jsonl

    _print_stats(gen)
    table = Table(title=f"{report.tool}: outputs left after each filter")
    table.add_column("step")
    table.add_column("outputs", justify="right")
    for step, n in report.rows():
        table.add_row(step, str(n))
    out.print(table)
    for name, value in report.notes.items():
        out.print(f"{name.replace('_', ' ')}: {value}")
    (write or write_jsonl)(output, records)
    atomic.write_json(report_path(output), {**report.to_dict(), "generator": gen.describe()})
    out.print(f"wrote {len(records)} records to {output} (counts: {report_path(output)})")


@synth_app.command("hyde")
def synth_hyde(
    path: DataPathArg,
    output: ToolOutputOpt,
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    split: SplitOpt = "train",
    llm: flag(str, LLMSettings, "model", "--llm") = None,
    per_query: Annotated[int, typer.Option(help="pseudo-documents per query (sampled; give a temperature)")] = 1,
    temperature: TemperatureOpt = 0.0,
    max_tokens: Annotated[int, typer.Option(help="tokens per pseudo-document")] = 160,
    min_chars: Annotated[int, typer.Option(help="shortest pseudo-document kept")] = 20,
    limit: LimitOpt = None,
    progress: ProgressOpt = None,
    prompt_style: PromptStyleOpt = None,
    json_mode: flag(str, LLMSettings, "json_mode", "--json-mode") = None,
    batch_size: BatchOpt = None,
    concurrency: ConcurrencyOpt = None,
    model_name: ModelNameOpt = None,
    cache_dir: CacheOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """Query → pseudo-document (HyDE): a passage the LLM imagines answering each training query,
    written as JSONL (query_id, query, pseudo_doc) to augment sparse training data."""
    from korag.synth.generation import GenerationConfig
    from korag.synth.toolbox import FilterSettings, ToolPrompt, generate_pseudo_documents

    gen, chat, json_out = _tool_llm(
        llm, prompt_style, json_mode, model_name, concurrency, batch_size, cache_dir, config, set_, show_config
    )
    items, _ = _training_queries(path, format, split, limit)
    cfg = GenerationConfig(max_tokens=max_tokens, temperature=temperature)
    records, report = generate_pseudo_documents(
        items,
        gen,
        cfg,
        prompt=ToolPrompt("hyde", chat=chat, json_output=json_out),
        samples=per_query,
        filters=FilterSettings(min_chars=min_chars),
        progress_file=progress,
        show_progress=True,
    )
    _finish_tool(report, records, output, gen)


@synth_app.command("paraphrase")
def synth_paraphrase(
    path: DataPathArg,
    output: ToolOutputOpt,
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    split: SplitOpt = "train",
    llm: flag(str, LLMSettings, "model", "--llm") = None,
    n: Annotated[int, typer.Option("--n", "-n", help="paraphrases per query")] = 3,
    temperature: TemperatureOpt = 0.8,
    max_tokens: Annotated[int, typer.Option(help="tokens per answer")] = 48,
    roundtrip: Annotated[
        bool, typer.Option(help="keep a paraphrase only if BM25 still finds its query's gold passage")
    ] = False,
    roundtrip_k: Annotated[int, typer.Option(help="round trip: gold passage within BM25's top k")] = 10,
    pairs: Annotated[Path | None, typer.Option(help="also write training pairs (paraphrase, gold passage)")] = None,
    limit: LimitOpt = None,
    progress: ProgressOpt = None,
    prompt_style: PromptStyleOpt = None,
    json_mode: flag(str, LLMSettings, "json_mode", "--json-mode") = None,
    batch_size: BatchOpt = None,
    concurrency: ConcurrencyOpt = None,
    model_name: ModelNameOpt = None,
    cache_dir: CacheOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """N paraphrases per training query, filtered (empty, identical, duplicate, answer leaked,
    optionally round trip); written as a questions JSONL (id, question, answers, source_id, doc_ids)."""
    from korag.synth.generation import GenerationConfig
    from korag.synth.toolbox import FilterSettings, ToolPrompt, generate_paraphrases

    gen, chat, json_out = _tool_llm(
        llm, prompt_style, json_mode, model_name, concurrency, batch_size, cache_dir, config, set_, show_config
    )
    items, corpus = _training_queries(path, format, split, limit)
    retriever = None
    if (roundtrip or pairs) and corpus is None:
        raise ConfigError("--roundtrip and --pairs need passages: give a QA set or BEIR data, not a questions file")
    if roundtrip:
        from korag.retrieval.bm25 import BM25Retriever

        retriever = BM25Retriever()
        retriever.index(corpus, show_progress=True)  # type: ignore[arg-type]
    records, report = generate_paraphrases(
        items,
        gen,
        GenerationConfig(max_tokens=max_tokens, temperature=temperature),
        n=n,
        prompt=ToolPrompt("paraphrase", chat=chat, json_output=json_out, paraphrases=n),
        filters=FilterSettings(max_chars=200, roundtrip_k=roundtrip_k),
        retriever=retriever,
        progress_file=progress,
        show_progress=True,
    )
    _finish_tool(report, records, output, gen)
    if pairs:
        from korag.data.training import TrainingPair, write_pairs_jsonl

        contents = dict(zip(corpus.ids, corpus.contents(), strict=True))  # type: ignore[union-attr]
        rows = [
            TrainingPair(r["question"], contents[d], (), r["id"], d)
            for r in records
            for d in r["doc_ids"][:1]
            if d in contents
        ]
        write_pairs_jsonl(rows, pairs)
        out.print(f"wrote {len(rows)} training pairs to {pairs}")


@synth_app.command("negatives")
def synth_negatives(
    path: DataPathArg,
    output: ToolOutputOpt,
    format: Annotated[str, typer.Option(help="input format (auto-detected by default)")] = "auto",
    split: SplitOpt = "train",
    llm: flag(str, LLMSettings, "model", "--llm") = None,
    per_query: Annotated[int, typer.Option(help="negatives written per query (sampled; give a temperature)")] = 1,
    temperature: TemperatureOpt = 0.0,
    max_tokens: Annotated[int, typer.Option(help="tokens per negative")] = 160,
    check: Annotated[
        str, typer.Option(help="retriever check: bm25 (below the gold passage, within the top k) | none")
    ] = "bm25",
    check_k: Annotated[int, typer.Option(help="a negative must rank within this top k for its query")] = 10,
    limit: LimitOpt = None,
    progress: ProgressOpt = None,
    prompt_style: PromptStyleOpt = None,
    json_mode: flag(str, LLMSettings, "json_mode", "--json-mode") = None,
    batch_size: BatchOpt = None,
    concurrency: ConcurrencyOpt = None,
    model_name: ModelNameOpt = None,
    cache_dir: CacheOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
) -> None:
    """LLM-written hard negatives: passages on the query's topic that do not answer it, checked
    by the answer string and a retriever; written as training pairs (query, positive, negatives)."""
    from korag.synth.generation import GenerationConfig
    from korag.synth.toolbox import FilterSettings, ToolPrompt, generate_negatives

    if check not in ("bm25", "none"):
        raise ConfigError(f"--check must be bm25 or none (got {check!r})")
    gen, chat, json_out = _tool_llm(
        llm, prompt_style, json_mode, model_name, concurrency, batch_size, cache_dir, config, set_, show_config
    )
    items, corpus = _training_queries(path, format, split, limit)
    if corpus is None:
        raise ConfigError("written negatives imitate each query's gold passage: give a QA set or BEIR data")
    retriever = None
    if check == "bm25":
        from korag.retrieval.bm25 import BM25Retriever

        retriever = BM25Retriever
    records, report = generate_negatives(
        items,
        corpus,
        gen,
        GenerationConfig(max_tokens=max_tokens, temperature=temperature),
        samples=per_query,
        prompt=ToolPrompt("negative", chat=chat, json_output=json_out),
        filters=FilterSettings(min_chars=20, roundtrip_k=check_k),
        retriever=retriever,
        progress_file=progress,
        show_progress=True,
    )
    _finish_tool(report, records, output, gen)


@synth_app.command("gpl")
def synth_gpl(
    data: Annotated[str, typer.Argument(help="the corpus to adapt to (any loadable data)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")],
    teacher: Annotated[str | None, typer.Option(help="cross-encoder directory labelling the margins")] = None,
    base: Annotated[str | None, typer.Option(help="the dense model to adapt (the student)")] = None,
    queries: Annotated[
        Path | None, typer.Option(help="generated queries over DATA (korag synth queries' output) instead of --llm")
    ] = None,
    llm: flag(str, LLMSettings, "model", "--llm", extra="generate queries with this LLM") = None,
    per_doc: Annotated[int, typer.Option(help="generated queries per passage (with --llm)")] = 1,
    max_steps: flag(int, TrainConfigBase, "max_steps") = None,
    epochs: flag(float, TrainConfigBase, "epochs") = None,
    batch_size: flag(int, TrainConfigBase, "batch_size") = None,
    learning_rate: flag(float, TrainConfigBase, "learning_rate") = None,
    lora: flag(bool, TrainConfigBase, "lora", "--lora/--full") = None,
    prompt_style: PromptStyleOpt = None,
    model_name: ModelNameOpt = None,
    cache_dir: CacheOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")] = True,
) -> None:
    """GPL: generated queries → BM25 and dense negatives → cross-encoder margins → MarginMSE
    training of the dense model (TensorBoard, checkpoints). --config/--set take the trainer's
    settings (see --show-config)."""
    from korag.training.gpl import GPLTrainConfig

    flags: dict = {
        "teacher": teacher,
        "base": base,
        "max_steps": max_steps,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
    }
    if lora is not None:
        flags["lora"] = {} if lora else False
    settings = config_from(GPLTrainConfig, config=config, sets=set_, flags=flags, show=show_config)
    require_extra("dense", "korag synth gpl")
    from korag.data.load import corpus_of, load
    from korag.models.encoder import resolve_model_path
    from korag.retrieval.rerank import check_reranker
    from korag.training.gpl import train_gpl

    resolve_model_path(settings.base)  # mistyped models fail before any data is read
    check_reranker(settings.teacher)
    if (queries is None) == (llm is None):
        raise ConfigError("give the generated queries: --queries FILE (korag synth queries' output) or --llm MODEL")
    corpus = corpus_of(load(data, show_progress=True))
    synthetic = _gpl_queries(corpus, queries, llm, per_doc, prompt_style, model_name, cache_dir)
    out.print(f"{len(synthetic)} generated queries over {len(corpus):,} passages")
    result = train_gpl(synthetic.to_retrieval_set("gpl"), settings, output, resume=resume)
    from korag.cli.train import report_training

    extra = result.extra
    out.print(
        f"{extra['examples']} labelled examples{' (reused)' if extra['examples_reused'] else ''}; "
        f"teacher margins {extra['margin_mean']:.3f} ± {extra['margin_std']:.3f}"
    )
    report_training("GPL", result, output)


def _gpl_queries(corpus, queries: Path | None, llm, per_doc: int, prompt_style, model_name, cache_dir):
    """The generated queries GPL trains on: read, or generated and cleaned (length, duplicates,
    copies, language — the teacher's margins take care of the rest)."""
    from korag.data.synthetic import SyntheticSet
    from korag.synth.filters import FilterConfig, apply_filters

    if queries is not None:
        return SyntheticSet.read_jsonl(queries, corpus)
    from korag.synth.chat import resolve_prompt_style
    from korag.synth.generation import GenerationConfig
    from korag.synth.prompts import QueryPrompt
    from korag.synth.queries import generate_llm_queries

    settings = config_from(LLMSettings, flags={"model": llm, "prompt_style": prompt_style, "model_name": model_name})
    gen = _generator(settings, cache_dir)
    prompt = QueryPrompt("question", chat=resolve_prompt_style(gen, settings.prompt_style) == "chat")
    cfg = GenerationConfig(max_tokens=48, temperature=0.0 if per_doc == 1 else 0.8)
    got, _ = generate_llm_queries(corpus, gen, prompt, cfg, per_doc=per_doc)
    _print_stats(gen)
    kept, report = apply_filters(got, FilterConfig(enabled=["length", "dedup", "copy", "language"]))
    out.print(f"generated queries: {sum(report.generated.values())}, kept {len(kept)}")
    if not len(kept):
        raise ConfigError("no generated query survived the filters; try another --llm or give --queries")
    return kept
