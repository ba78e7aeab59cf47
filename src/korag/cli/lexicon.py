"""`korag lexicon …`: IDF tables, trending keywords and the Korean–English synonym dictionary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from korag.cli.common import out
from korag.errors import ConfigError, DataError
from korag.eval.tables import trends_table

app = typer.Typer(help="Build lexical resources: IDF, trending keywords, synonyms.", no_args_is_help=True)


def _corpus(path: str, format: str):
    from korag.data.load import load
    from korag.data.schema import Corpus

    data = load(path, format=format, show_progress=True)
    return data if isinstance(data, Corpus) else data.corpus


def _dates(corpus, field: str, source: str) -> list[str]:
    dates = []
    for i, doc in enumerate(corpus):
        value = (doc.meta or {}).get(field)
        if value is None:
            raise DataError(
                source, "has no date", record=f"document {i + 1} (id={doc.id!r})", field=f"metadata.{field}"
            )
        dates.append(value)
    return dates


def _find_trends(corpus, tokens, *, background, tokenizer, date_field, since, window_days, path, min_count):
    from korag.text.tokenize import make_tokenizer
    from korag.text.trends import split_by_date, split_by_window, trending_terms

    if background:
        ref = _corpus(background, "auto")
        return trending_terms(tokens, make_tokenizer(tokenizer).tokenize_batch(ref.contents()), min_count=min_count)
    if not (since or window_days):
        raise ConfigError("give --background REF, or --since DATE / --window-days N with dated documents")
    dates = _dates(corpus, date_field, path)
    recent, older = split_by_date(dates, since) if since else split_by_window(dates, window_days)
    return trending_terms([tokens[i] for i in recent], [tokens[i] for i in older], min_count=min_count)


@app.command("trends")
def lexicon_trends(
    path: Annotated[str, typer.Argument(help="the target (recent) corpus, or a dated corpus with --since")],
    background: Annotated[str | None, typer.Option(help="reference corpus to compare against")] = None,
    date_field: Annotated[str, typer.Option(help="metadata field holding each document's date")] = "date",
    since: Annotated[str | None, typer.Option(help="documents dated on or after this are recent")] = None,
    window_days: Annotated[int | None, typer.Option(help="recent = the last N days of the corpus")] = None,
    tokenizer: Annotated[str, typer.Option(help="korag tokenizer spec")] = "bigram-stem",
    min_count: Annotated[int, typer.Option(help="minimum recent documents per term")] = 3,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the terms as JSON")] = None,
    format: Annotated[str, typer.Option(help="input format")] = "auto",
) -> None:
    """Terms whose document frequency rose significantly (log-ratio and z-score)."""
    from dataclasses import asdict

    from korag import atomic
    from korag.text.tokenize import make_tokenizer

    corpus = _corpus(path, format)
    tokens = make_tokenizer(tokenizer).tokenize_batch(corpus.contents())
    terms = _find_trends(
        corpus,
        tokens,
        background=background,
        tokenizer=tokenizer,
        date_field=date_field,
        since=since,
        window_days=window_days,
        path=path,
        min_count=min_count,
    )
    out.print(trends_table(terms, 30))
    if output:
        atomic.write_json(output, [asdict(t) for t in terms])
        out.print(f"wrote {len(terms)} terms to {output}")


@app.command("idf")
def lexicon_idf(
    path: Annotated[str, typer.Argument(help="corpus to count document frequencies in")],
    output: Annotated[Path, typer.Option("--output", "-o", help="IDF table (JSON)")],
    tokenizer: Annotated[str, typer.Option(help="korag tokenizer spec, or hf:DIR for subword pieces")] = "bigram-stem",
    opensearch_model: Annotated[
        Path | None, typer.Option(help="write OpenSearch idf.json over this model's tokenizer vocabulary instead")
    ] = None,
    boost: Annotated[float, typer.Option(help="factor for trending terms and --keyword")] = 2.0,
    keyword: Annotated[list[str] | None, typer.Option(help="keyword to boost (repeatable)")] = None,
    trending_background: Annotated[str | None, typer.Option(help="boost terms trending against this corpus")] = None,
    since: Annotated[str | None, typer.Option(help="boost terms trending since this date (dated corpus)")] = None,
    date_field: Annotated[str, typer.Option(help="metadata field with dates")] = "date",
    format: Annotated[str, typer.Option(help="input format")] = "auto",
) -> None:
    """IDF over any tokenizer, optionally boosting trending terms and hand-picked keywords."""
    from korag.text.idf import corpus_idf, term_idf, write_idf_json, write_term_idf
    from korag.text.tokenize import make_tokenizer
    from korag.text.trends import boost_weights

    corpus = _corpus(path, format)
    texts = corpus.contents()
    if opensearch_model:
        from transformers import AutoTokenizer

        if trending_background or since or keyword:
            raise ConfigError(
                "boosting applies to korag tokenizer tables; drop --opensearch-model or the boost options"
            )
        tok = AutoTokenizer.from_pretrained(str(opensearch_model))
        weights, _ = corpus_idf(tok, texts, show_progress=True)
        pieces = tok.convert_ids_to_tokens(list(range(len(weights))))
        n = write_idf_json(output, weights, pieces)
        out.print(f"wrote {n} token weights (OpenSearch idf.json) to {output}")
        return
    tok = make_tokenizer(tokenizer)
    tokens = tok.tokenize_batch(texts, show_progress=True)
    weights = term_idf(tokens)
    trending = []
    if trending_background or since:
        trending = _find_trends(
            corpus,
            tokens,
            background=trending_background,
            tokenizer=tokenizer,
            date_field=date_field,
            since=since,
            window_days=None,
            path=path,
            min_count=3,
        )
        out.print(trends_table(trending, 15))
    if trending or keyword:
        weights = boost_weights(weights, trending, boost, keywords=keyword or (), tokenizer=tok)
    write_term_idf(output, weights)
    out.print(f"wrote {len(weights)} term weights to {output} ({len(trending)} trending terms boosted ×{boost})")


@app.command("synonyms")
def lexicon_synonyms(
    path: Annotated[str, typer.Argument(help="corpus to mine")],
    output: Annotated[Path, typer.Option("--output", "-o", help="synonym dictionary (JSON)")],
    encoder: Annotated[str | None, typer.Option(help="dense encoder for embedding candidates (e.g. E5)")] = None,
    threshold: Annotated[float, typer.Option(help="cosine threshold of embedding candidates")] = 0.9,
    llm: Annotated[str | None, typer.Option(help="verify candidates with this LLM (yes/no prompt)")] = None,
    min_count: Annotated[int, typer.Option(help="minimum occurrences of a bracket gloss")] = 1,
    format: Annotated[str, typer.Option(help="input format")] = "auto",
    enhance: Annotated[
        Path | None,
        typer.Option(
            help="re-score this dictionary instead (LLM yes/no + corpus evidence in PATH); report kept/dropped"
        ),
    ] = None,
    min_seen: Annotated[int, typer.Option(help="--enhance: documents each form must appear in")] = 1,
    keep_rejected: Annotated[
        bool, typer.Option(help="--enhance: keep LLM-rejected pairs with weight 0 instead of dropping them")
    ] = False,
) -> None:
    """Korean–English pairs from bracket glosses, embedding similarity and LLM verification;
    with --enhance, an existing dictionary's entries re-checked (LLM yes/no, corpus evidence)."""
    from korag.synth.synonyms import corpus_terms, embedding_candidates, pattern_candidates, verify_with_llm
    from korag.text.synonyms import SynonymDict

    if enhance is not None:
        _enhance(path, format, output, enhance, llm, min_seen, keep_rejected)
        return
    texts = _corpus(path, format).contents()
    found = SynonymDict(pattern_candidates(texts, min_count=min_count))
    out.print(f"bracket glosses: {len(found)} pairs")
    if encoder:
        ko, en = corpus_terms(texts)
        emb = embedding_candidates(ko, en, encoder, threshold=threshold)
        out.print(f"embedding candidates: {len(emb)} pairs")
        found = found.merge(emb)
    if llm:
        from korag.synth.llm import make_generator

        found = SynonymDict(verify_with_llm(list(found), make_generator(llm)))
        out.print(f"after LLM verification: {len(found)} pairs")
    found.save(output)
    table = Table(title=f"{len(found)} synonym pairs")
    for col in ("korean", "english", "sources", "weight"):
        table.add_column(col)
    for e in list(found)[:30]:
        table.add_row(e.korean, e.english, ",".join(sorted(e.sources)), f"{e.weight:.2f}")
    out.print(table)
    out.print(f"wrote {output}")


def _llm_generator(spec: str | None):
    """A generator for lexicon commands (the offline default when `spec` is None)."""
    from korag.cli.common import require_extra
    from korag.synth.llm import DEFAULT_LLM, make_generator

    spec = spec or DEFAULT_LLM
    if not spec.startswith(("http://", "https://", "@")) and "," not in spec:
        require_extra("llm", f"the local LLM {spec!r}")
    return make_generator(spec)


def _synonym_table(title: str, entries) -> Table:
    table = Table(title=title)
    for col in ("korean", "english", "sources", "weight", "ko docs", "en docs", "both"):
        table.add_column(col)
    for e in list(entries)[:30]:
        s = e.scores
        counts = [f"{s[k]:.0f}" if k in s else "–" for k in ("corpus_ko", "corpus_en", "cooccur")]
        table.add_row(e.korean, e.english, ",".join(sorted(e.sources)), f"{e.weight:.2f}", *counts)
    return table


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("step")
    table.add_column("count", justify="right")
    for k, v in counts.items():
        table.add_row(k.replace("_", " "), str(v))
    return table


def _save_counts(output: Path, counts: dict[str, int], gen) -> Path:
    from korag import atomic

    path = output.with_name(f"{output.stem}.report.json")
    atomic.write_json(path, {"counts": counts, "generator": gen.describe()})
    return path


def _enhance(path, format, output, dictionary, llm, min_seen, keep_rejected) -> None:
    from korag.synth.synonyms import enhance_dictionary
    from korag.text.synonyms import SynonymDict

    before = SynonymDict.load(dictionary)  # a malformed dictionary fails before the LLM loads
    texts = _corpus(path, format).contents()
    gen = _llm_generator(llm)
    kept, counts = enhance_dictionary(before, texts, gen, min_seen=min_seen, keep_rejected=keep_rejected)
    result = SynonymDict(kept)
    result.save(output)
    out.print(_counts_table(f"re-scored {dictionary}", counts))
    out.print(_synonym_table(f"{len(result)} synonym pairs", result))
    report = _save_counts(output, counts, gen)
    out.print(
        f"kept {counts['kept']}, dropped {counts['rejected'] + counts['unseen']}; wrote {output} (counts: {report})"
    )


@app.command("discover")
def lexicon_discover(
    path: Annotated[str, typer.Argument(help="corpus whose frequent terms are looked up")],
    output: Annotated[Path, typer.Option("--output", "-o", help="synonym dictionary (JSON)")],
    llm: Annotated[str | None, typer.Option(help="LLM proposing and checking pairs [default: gemma3-270m]")] = None,
    terms: Annotated[int, typer.Option(help="most frequent Korean terms, and as many English, to look up")] = 50,
    tokenizer: Annotated[
        str | None, typer.Option(help="korag tokenizer counting Korean terms (default: words, particles stripped)")
    ] = None,
    min_count: Annotated[int, typer.Option(help="occurrences a term needs to be looked up")] = 2,
    min_seen: Annotated[int, typer.Option(help="documents the proposed form must appear in")] = 1,
    min_cooccur: Annotated[int, typer.Option(help="documents holding both forms (0: not required)")] = 0,
    merge: Annotated[Path | None, typer.Option(help="add the discoveries to this existing dictionary")] = None,
    progress: Annotated[Path | None, typer.Option(help="resumable progress file of the LLM's proposals")] = None,
    format: Annotated[str, typer.Option(help="input format")] = "auto",
) -> None:
    """LLM synonym discovery: the other-language equivalent of the corpus' frequent terms,
    kept when the LLM's yes/no check agrees and the corpus holds the proposed form."""
    from korag.synth.synonyms import discover_synonyms
    from korag.text.synonyms import SynonymDict

    known = SynonymDict.load(merge) if merge else SynonymDict()
    texts = _corpus(path, format).contents()
    gen = _llm_generator(llm)
    found, counts = discover_synonyms(
        texts,
        gen,
        terms=terms,
        tokenizer=tokenizer,
        min_count=min_count,
        min_seen=min_seen,
        min_cooccur=min_cooccur,
        known=known,
        progress_file=progress,
        show_progress=True,
    )
    result = known.merge(found)
    result.save(output)
    out.print(_counts_table("LLM synonym discovery", counts))
    out.print(_synonym_table(f"{len(found)} new synonym pairs", found))
    report = _save_counts(output, counts, gen)
    out.print(f"wrote {len(result)} pairs ({len(found)} new) to {output} (counts: {report})")
