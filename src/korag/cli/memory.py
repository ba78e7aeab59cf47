"""Memory models from the command line: ``korag train clara``, ``korag train pqa write|read``,
``korag eval clara`` and ``korag eval pqa``. Settings are the library's configs
(`ClaraTrainConfig`, `WriteConfig`, `ReadConfig`): ``--config``/``--set`` reach every field,
``--show-config`` prints them, the flags are the everyday ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from korag import atomic
from korag.cli.common import ConfigOpt, SetOpt, ShowConfigOpt, config_from, flag, out, require_extra
from korag.errors import ConfigError
from korag.memory.clara.config import ClaraTrainConfig
from korag.memory.pqa.config import ReadConfig, WriteConfig

pqa_app = typer.Typer(help="Train parametric QA: write documents into memories, then learn to read them.")

OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")]
ResumeOpt = Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps [default: auto]")]


def register(train_app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the memory-model commands to ``korag train`` and ``korag eval``."""
    train_app.command("clara")(train_clara_cmd)
    train_app.add_typer(pqa_app, name="pqa")
    eval_app.command("clara")(eval_clara_cmd)
    eval_app.command("pqa")(eval_pqa_cmd)


def _loop_report(phase: str, what: str, result: dict[str, Any], output: Path) -> None:
    out.print(
        f"{phase}: {result['steps']} steps on {what} in {result['seconds']:.0f} s ({result['device']}); "
        f"loss {result['first_loss']:.3f} → {result['last_loss']:.3f}; model in {output / 'model'}"
    )


# -- CLaRa ------------------------------------------------------------------------------------
def train_clara_cmd(
    data: Annotated[Path, typer.Argument(help="ml-clara JSONL for the stage (see korag.memory.clara.data)")],
    output: OutputOpt,
    stage: flag(int, ClaraTrainConfig, "stage") = None,
    base: flag(str, ClaraTrainConfig, "base") = None,
    init_from: flag(str, ClaraTrainConfig, "init_from") = None,
    compression_rate: flag(int, ClaraTrainConfig, "clara.compression_rate") = None,
    doc_max_length: flag(int, ClaraTrainConfig, "clara.doc_max_length") = None,
    epochs: flag(float, ClaraTrainConfig, "epochs") = None,
    max_steps: flag(int, ClaraTrainConfig, "max_steps") = None,
    batch_size: flag(int, ClaraTrainConfig, "batch_size") = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: ResumeOpt = True,
) -> None:
    """Train one CLaRa stage (resumable, TensorBoard logs under OUTPUT/tensorboard)."""
    flags = {
        "stage": stage,
        "base": base,
        "init_from": init_from,
        "clara.compression_rate": compression_rate,
        "clara.doc_max_length": doc_max_length,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "device": device,
    }
    settings = config_from(ClaraTrainConfig, config=config, sets=set_, flags=flags, show=show_config)
    require_extra("memory", "korag train clara")
    from korag.memory.clara.data import read_clara_jsonl
    from korag.memory.clara.train import train_clara

    examples = read_clara_jsonl(data, settings.stage)
    result = train_clara(examples, settings, output, resume=resume)
    _loop_report(f"stage {settings.stage}", f"{result['examples']} records", result, output)


def eval_clara_cmd(
    data: Annotated[
        Path,
        typer.Argument(
            help="ml-clara stage-2/3 JSONL (question, docs, answer, pos_index), or with --corpus questions JSONL"
        ),
    ],
    model: Annotated[
        list[Path], typer.Option(help="CLaRa model directory (a training run's model/); repeat to compare (e.g. rates)")
    ],
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="answer over this corpus (PDF, text, HTML, folder, JSONL): chunked, BM25-retrieved, compressed"
        ),
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", "-k", help="documents per question [default: the model's top_k]")
    ] = None,
    chunk_tokens: Annotated[int, typer.Option(help="with --corpus: words per passage")] = 80,
    baselines: Annotated[
        str, typer.Option(help="comma-separated, '' for none: closed-book, full-text")
    ] = "closed-book,full-text",
    limit: Annotated[int | None, typer.Option(help="evaluate the first N records")] = None,
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="compressed documents are kept in WORKSPACE/.cache/clara")
    ] = Path("korag-workspace"),
    cache: Annotated[bool, typer.Option(help="reuse and keep compressed documents")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write rows (with predictions) as JSON")] = None,
) -> None:
    """EM/F1 of CLaRa against closed-book and full-text RAG, with retrieval, compression and latency."""
    require_extra("memory", "korag eval clara")
    from korag.eval.comparison import rows_to_json
    from korag.eval.tables import clara_table
    from korag.memory.clara.evaluate import evaluate_models

    wanted = [b.strip() for b in baselines.split(",") if b.strip()]
    result = evaluate_models(
        model,
        data,
        corpus=corpus,
        k=k,
        chunk_tokens=chunk_tokens,
        baselines=wanted,
        limit=limit,
        cache_dir=workspace / ".cache" / "clara" if cache else None,
        device=device,
        show_progress=True,
    )
    if result.note:
        out.print(result.note)
    out.print(clara_table(f"CLaRa on {corpus or data} ({result.questions} questions, k={result.k})", result.rows))
    if output:
        atomic.write_json(output, rows_to_json(result.rows))
        out.print(f"wrote {output}")


# -- parametric QA ----------------------------------------------------------------------------
def _qa_data(path: Path):
    """(corpus, examples) of a QA set file (KorQuAD, SQuAD, HotpotQA, BEIR with answers, the sample)."""
    from korag.data.load import load
    from korag.data.schema import QASet

    data = load(str(path))
    if not isinstance(data, QASet):
        raise ConfigError(f"{path}: parametric QA needs questions with answers (KorQuAD, SQuAD, HotpotQA, sample)")
    return data.corpus, list(data.examples)


QADataArg = Annotated[Path, typer.Argument(help="a QA set (KorQuAD, SQuAD, HotpotQA, …): its documents, its questions")]


@pqa_app.command("write")
def train_pqa_write_cmd(
    data: QADataArg,
    output: OutputOpt,
    base: flag(str, WriteConfig, "base") = None,
    encoder: flag(str, WriteConfig, "encoder") = None,
    max_docs: flag(int, WriteConfig, "max_docs") = None,
    m_tokens: flag(int, WriteConfig, "pqa.m_tokens") = None,
    z_dim: flag(int, WriteConfig, "pqa.z_dim") = None,
    max_doc_tokens: flag(int, WriteConfig, "pqa.max_doc_tokens") = None,
    epochs: flag(float, WriteConfig, "epochs") = None,
    max_steps: flag(int, WriteConfig, "max_steps") = None,
    batch_size: flag(int, WriteConfig, "batch_size") = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: ResumeOpt = True,
) -> None:
    """The write phase: every document into its own memory z_i of a frozen LM (resumable)."""
    flags = {
        "base": base,
        "encoder": encoder,
        "max_docs": max_docs,
        "pqa.m_tokens": m_tokens,
        "pqa.z_dim": z_dim,
        "pqa.max_doc_tokens": max_doc_tokens,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "device": device,
    }
    settings = config_from(WriteConfig, config=config, sets=set_, flags=flags, show=show_config)
    require_extra("memory", "korag train pqa write")
    from korag.memory.pqa.train import write_documents

    corpus, _ = _qa_data(data)
    result = write_documents(corpus, settings, output, resume=resume)
    _loop_report("write", f"{result['documents']} documents", result, output)


@pqa_app.command("read")
def train_pqa_read_cmd(
    data: QADataArg,
    output: OutputOpt,
    init_from: flag(str, ReadConfig, "init_from") = None,
    encoder: flag(str, ReadConfig, "encoder") = None,
    selector: flag(str, ReadConfig, "selector.kind") = None,
    train_with: flag(str, ReadConfig, "train_with") = None,
    lora_r: Annotated[
        int | None, typer.Option(help="LoRA rank on the LM (0: the LM stays frozen) [default: 0]")
    ] = None,
    epochs: flag(float, ReadConfig, "epochs") = None,
    max_steps: flag(int, ReadConfig, "max_steps") = None,
    batch_size: flag(int, ReadConfig, "batch_size") = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    show_config: ShowConfigOpt = False,
    resume: ResumeOpt = True,
) -> None:
    """The read phase: questions → a selector over the memories and (optionally) a LoRA reader."""
    flags = {
        "init_from": init_from,
        "encoder": encoder,
        "selector.kind": selector,
        "train_with": train_with,
        "lora": lora_r,  # a rank is a LoRA setting's shorthand (0: none)
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "device": device,
    }
    settings = config_from(ReadConfig, config=config, sets=set_, flags=flags, show=show_config)
    if settings.init_from is None:
        raise ConfigError("the read phase needs --init-from (a written model directory)")
    require_extra("memory", "korag train pqa read")
    from korag.memory.pqa.train import train_read

    corpus, examples = _qa_data(data)
    result = train_read(corpus, examples, settings, output, resume=resume)
    _loop_report("read", f"{result['questions']} questions", result, output)


def eval_pqa_cmd(
    data: Annotated[Path, typer.Argument(help="the QA set the model was written from (KorQuAD, SQuAD, HotpotQA, …)")],
    model: Annotated[Path, typer.Option(help="the read phase's model directory")],
    written: Annotated[
        Path | None, typer.Option(help="measure write quality on this write-phase model [default: --model itself]")
    ] = None,
    clara: Annotated[Path | None, typer.Option(help="a CLaRa model to add as a row")] = None,
    xrag: Annotated[Path | None, typer.Option(help="an xRAG-style model (memory=encoder) to add as a row")] = None,
    multihop: Annotated[bool, typer.Option(help="questions need several documents; add iterative hops")] = False,
    k: Annotated[int, typer.Option("--k", "-k", help="memories (and passages) read per question")] = 1,
    baselines: Annotated[
        str, typer.Option(help="comma-separated, '' for none: closed-book, bm25, dense, hybrid, oracle")
    ] = "closed-book,bm25,dense,hybrid,oracle",
    limit: Annotated[int | None, typer.Option(help="evaluate the first N questions")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the result (with predictions) as JSON")
    ] = None,
) -> None:
    """Parametric QA beside closed-book, text RAG, the oracle, CLaRa and xRAG, with its write quality."""
    require_extra("memory", "korag eval pqa")
    from korag.eval.comparison import System, find, rows_to_json
    from korag.eval.tables import pqa_table, write_quality_table
    from korag.memory.pqa.compare import compare_systems
    from korag.models.device import resolve_device

    corpus, examples = _qa_data(data)
    result = compare_systems(
        model,
        corpus,
        examples[:limit] if limit else examples,
        k=k,
        baselines=[b.strip() for b in baselines.split(",") if b.strip()],
        clara_dir=clara,
        xrag_dir=xrag,
        written_dir=written,
        multihop=multihop,
        device=resolve_device(device),
        show_progress=True,
    )
    title = (
        f"parametric QA on {data} ({result['questions']} questions, {result['documents']} documents, k={result['k']})"
    )
    out.print(pqa_table(title, result["rows"]))
    out.print(write_quality_table(result["write"]))
    gold = find(result["rows"], System.PQA_GOLD)
    out.print(
        f"memory per document: {gold['bytes_per_document']:,} bytes of z vs {result['text_bytes_per_document']:,.0f} "
        f"bytes of text (UTF-8); peak memory {gold['peak_memory_mb']:,.0f} MB"
    )
    if output:
        payload = {**result, "rows": rows_to_json(result["rows"])}
        atomic.write_json(output, json.loads(json.dumps(payload, default=str)))
        out.print(f"wrote {output}")
