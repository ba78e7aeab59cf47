"""`korag data …`: describe and convert data."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from korag import atomic
from korag.cli.common import OverwriteOpt, out, print_load_report
from korag.errors import ConfigError
from korag.text.tokenize import DEFAULT_TOKENIZER

app = typer.Typer(help="Read, convert and describe data.", no_args_is_help=True)


class Layout(StrEnum):
    """Output layouts of `korag data convert`."""

    BEIR = "beir"


FormatOpt = Annotated[str, typer.Option(help="input format (auto-detected by default)")]


@app.command("stats")
def data_stats(
    path: Annotated[str, typer.Argument(help="file, directory, or builtin:sample")],
    format: FormatOpt = "auto",
    split: Annotated[str, typer.Option(help="qrels split for BEIR data")] = "test",
    tokenizer: Annotated[str, typer.Option(help="tokenizer for token counts and vocabulary")] = DEFAULT_TOKENIZER,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="also write the statistics as JSON")] = None,
) -> None:
    """Counts, length distributions, questions per passage, answer lengths and vocabulary size."""
    from korag.data.folder import LoadReport
    from korag.data.load import load
    from korag.data.stats import add_load_report, compute_stats, render_stats

    report = LoadReport()
    data = load(path, format=format, split=split, show_progress=True, report=report)
    stats = compute_stats(data, tokenizer, show_progress=True)
    add_load_report(stats, report)
    print_load_report(report)
    for table in render_stats(stats):
        out.print(table)
    if output:
        atomic.write_json(output, stats.to_dict())
        out.print(f"wrote {output}")


@app.command("convert")
def data_convert(
    path: Annotated[str, typer.Argument(help="input: KorQuAD/SQuAD JSON, BEIR directory, JSONL, PDF folder, …")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory")],
    to: Annotated[Layout, typer.Option("--to", help="output layout")] = Layout.BEIR,
    format: FormatOpt = "auto",
    split_by: Annotated[str | None, typer.Option(help="'article': train/test qrels split by source article")] = None,
    test_fraction: Annotated[float, typer.Option(help="share of articles whose questions form 'test'")] = 0.5,
    seed: Annotated[int, typer.Option(help="seed of the article split")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert data to another layout — e.g. KorQuAD to a BEIR paragraph-retrieval task, whole or
    split by article into train and test questions (both searched against the whole corpus)."""
    from korag.data.beir import write_beir
    from korag.data.folder import LoadReport
    from korag.data.load import load
    from korag.data.schema import Corpus, QASet, Qrels, Queries, RetrievalSet

    report = LoadReport()
    data = load(path, format=format, show_progress=True, report=report)
    print_load_report(report)
    answers = None
    splits = None
    if split_by is not None:
        if split_by != "article" or not isinstance(data, QASet):
            raise ConfigError("--split-by article needs QA data whose documents name their article (SQuAD/KorQuAD)")
        from korag.data.training import split_by_group

        group_of = {d.id: str(d.meta.get("article", d.title)) for d in data.corpus}
        train_part, test_part, _ = split_by_group(data, group_of, fraction=1 - test_fraction, seed=seed)
        splits = {"train": train_part.to_retrieval_set().qrels, "test": test_part.to_retrieval_set().qrels}
    if isinstance(data, QASet):
        answers = {e.id: e.answers for e in data.examples if e.answers}
        data = data.to_retrieval_set()
    elif isinstance(data, Corpus):
        data = RetrievalSet(data, Queries([], []), Qrels())
    try:
        write_beir(data, output, answers=answers, splits=splits, overwrite=overwrite)
    except FileExistsError:
        raise ConfigError(f"{output} exists and is not empty; pass --overwrite to replace it") from None
    out.print(
        f"wrote {output}: {len(data.corpus):,} documents, {len(data.queries):,} queries, "
        f"{data.qrels.num_pairs():,} judgements"
        + (
            f" (train {splits['train'].num_pairs():,} / test {splits['test'].num_pairs():,})"
            if splits
            else " (split 'test')"
        )
    )


@app.command("paraphrase")
def data_paraphrase(
    korquad_dev: Annotated[Path, typer.Argument(help="KorQuAD_v1.0_dev.json (its paragraphs are the corpus)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (BEIR layout)")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Write korag's Korean paraphrase retrieval set (461 hand-written questions over the KorQuAD 1.0
    dev paragraphs, CC BY 4.0) as a BEIR directory: the second scoreboard next to KorQuAD's own."""
    from korag.data.paraphrase import load_paraphrase, paraphrase_rows

    rs = load_paraphrase(korquad_dev)
    _write_question_set(rs, paraphrase_rows(), output, overwrite, "paragraphs", "paraphrased questions")


@app.command("domain")
def data_domain(
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (BEIR layout)")],
    kobill: Annotated[
        Path | None, typer.Option(help="kobill folder (default: the installed konlpy's data/corpus/kobill)")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write korag's out-of-domain Korean retrieval set (hand-written questions over the National
    Assembly bills konlpy ships, CC BY 4.0) as a BEIR directory: legislative prose, not Wikipedia."""
    from korag.data.domain import domain_rows, load_domain

    _write_question_set(load_domain(kobill), domain_rows(), output, overwrite, "bill passages", "questions")


def _write_question_set(rs, rows, output: Path, overwrite: bool, passages: str, questions: str) -> None:
    """Write a korag-written question set (with its answers) as a BEIR directory and say what it holds."""
    from korag.data.beir import write_beir

    answers = {r["id"]: [r["answer"]] for r in rows}
    try:
        write_beir(rs, output, answers=answers, overwrite=overwrite)
    except FileExistsError:
        raise ConfigError(f"{output} exists and is not empty; pass --overwrite to replace it") from None
    out.print(
        f"wrote {output}: {len(rs.corpus):,} {passages}, {len(rs.queries):,} {questions}, "
        f"{rs.qrels.num_pairs():,} judgements (split 'test')"
    )
