"""`korag train pqa` (write and read phases) and the parametric-QA side of `korag eval qa`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from korag.errors import ConfigError

out = Console()


def _qa_data(path: Path, max_docs: int | None = None):
    """(corpus, examples) of a QA set file (KorQuAD, SQuAD, HotpotQA, BEIR with answers, the sample);
    `max_docs` keeps the first N documents and the questions over them."""
    from korag.data.load import load
    from korag.data.schema import QASet

    data = load(str(path))
    if not isinstance(data, QASet):
        raise ConfigError(f"{path}: parametric QA needs questions with answers (KorQuAD, SQuAD, HotpotQA, sample)")
    corpus, examples = data.corpus, list(data.examples)
    if max_docs is not None:
        corpus = corpus.subset(range(min(max_docs, len(corpus))))
        examples = [e for e in examples if e.doc_ids and all(d in corpus for d in e.doc_ids)]
    return corpus, examples


def train_pqa_cmd(
    data: Annotated[Path, typer.Argument(help="a QA set (KorQuAD, SQuAD, HotpotQA, …): its documents, its questions")],
    phase: Annotated[str, typer.Option(help="write (documents → z) or read (questions → selector, answers)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")],
    base: Annotated[str | None, typer.Option(help="write: base causal LM (directory, .gguf, gemma3-270m)")] = None,
    init_from: Annotated[Path | None, typer.Option(help="read: the written model directory")] = None,
    encoder: Annotated[str | None, typer.Option(help="dense query encoder (directory, korag training output)")] = None,
    max_docs: Annotated[int | None, typer.Option(help="write the first N documents only")] = None,
    m_tokens: Annotated[int, typer.Option(help="write: memory vectors (soft tokens) per document")] = 4,
    z_dim: Annotated[int, typer.Option(help="write: width of each memory vector")] = 128,
    projection: Annotated[str, typer.Option(help="write: gelu | gate")] = "gelu",
    layer_norm: Annotated[bool, typer.Option(help="write: LayerNorm on the projected tokens")] = False,
    memory: Annotated[str, typer.Option(help="write: learned (PQA) | encoder (xRAG: z = dense embedding)")] = "learned",
    max_doc_tokens: Annotated[int, typer.Option(help="write: document tokens written into z")] = 256,
    token_dropout: Annotated[float, typer.Option(help="write: share of document input embeddings zeroed")] = 0.0,
    selector: Annotated[str, typer.Option(help="read: cosine | router | attention")] = "cosine",
    top_k: Annotated[int, typer.Option(help="read: memories the LM reads per question")] = 1,
    hops: Annotated[str, typer.Option(help="read: single | iterative (multi-hop questions)")] = "single",
    intermediate: Annotated[str, typer.Option(help="read, iterative: answer | document")] = "answer",
    train_with: Annotated[str, typer.Option(help="read: selected (straight-through top-k) | gold memories")] = (
        "selected"
    ),
    retrieval_weight: Annotated[float, typer.Option(help="read: α of L_qa + α·L_retrieval")] = 0.1,
    qa_weight: Annotated[float, typer.Option(help="read: 0 trains the selector alone (no LM pass)")] = 1.0,
    lora_r: Annotated[int, typer.Option(help="read: LoRA rank on the LM (0: the LM stays frozen)")] = 0,
    lr_z: Annotated[float | None, typer.Option(help="learning rate of z (write 1e-2; read default 0: fixed)")] = None,
    lr_projection: Annotated[float | None, typer.Option(help="projection (write 1e-3, read 1e-4)")] = None,
    lr_lm: Annotated[float, typer.Option(help="read: LoRA learning rate")] = 1e-4,
    lr_selector: Annotated[float, typer.Option(help="read: selector learning rate")] = 1e-3,
    selector_warmup_steps: Annotated[int, typer.Option(help="read: steps of L_retrieval alone first")] = 0,
    epochs: Annotated[float | None, typer.Option(help="passes over the data (write 30, read 10)")] = None,
    max_steps: Annotated[int, typer.Option(help="stop after this many steps (overrides epochs)")] = -1,
    batch_size: Annotated[int, typer.Option(help="documents or questions per step")] = 8,
    save_steps: Annotated[int, typer.Option(help="checkpoint every N steps")] = 200,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")] = True,
) -> None:
    """Train one parametric-QA phase (resumable; TensorBoard logs under OUTPUT/tensorboard)."""
    from korag.cli import _validated
    from korag.memory.adapters import LoraSettings
    from korag.memory.pqa.train import ReadConfig, WriteConfig, train_read, write_documents

    common: dict[str, Any] = {
        "max_steps": max_steps,
        "batch_size": batch_size,
        "save_steps": save_steps,
        "device": device,
        "seed": seed,
        **({"epochs": epochs} if epochs is not None else {}),
    }
    corpus, examples = _qa_data(data, max_docs)
    if phase == "write":
        if not base:
            raise ConfigError("--phase write needs --base (the causal LM to write into)")
        config = _validated(
            WriteConfig,
            base=base,
            encoder=encoder,
            pqa={
                "m_tokens": m_tokens,
                "z_dim": z_dim,
                "projection": projection,
                "layer_norm": layer_norm,
                "memory": memory,
                "max_doc_tokens": max_doc_tokens,
            },
            token_dropout=token_dropout,
            **({"lr_z": lr_z} if lr_z is not None else {}),
            **({"lr_projection": lr_projection} if lr_projection is not None else {}),
            **common,
        )
        result = write_documents(corpus, config, output, resume=resume)
        what = f"{result['documents']} documents"
    elif phase == "read":
        if init_from is None:
            raise ConfigError("--phase read needs --init-from (a written model directory)")
        config = _validated(
            ReadConfig,
            init_from=str(init_from),
            encoder=encoder,
            selector={"kind": selector},
            top_k=top_k,
            hops=hops,
            intermediate=intermediate,
            train_with=train_with,
            retrieval_weight=retrieval_weight,
            qa_weight=qa_weight,
            lora=LoraSettings.of_rank(lora_r),
            lr_lm=lr_lm,
            lr_selector=lr_selector,
            selector_warmup_steps=selector_warmup_steps,
            **({"lr_z": lr_z} if lr_z is not None else {}),
            **({"lr_projection": lr_projection} if lr_projection is not None else {}),
            **common,
        )
        result = train_read(corpus, examples, config, output, resume=resume)
        what = f"{result['questions']} questions"
    else:
        raise ConfigError("--phase must be write or read")
    out.print(
        f"{phase}: {result['steps']} steps on {what} in {result['seconds']:.0f} s ({result['device']}); "
        f"loss {result['first_loss']:.3f} → {result['last_loss']:.3f}; model in {output / 'model'}"
    )


def comparison_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    """The systems side by side (QA scores 0–100, gold-read share, latency)."""
    table = Table(title=title)
    table.add_column("system")
    cols = ["em_squad", "f1_squad", "em_korquad", "f1_korquad", "all_gold_selected", "recall@1", "mrr@10"]
    for c in [*cols, "ms/question"]:
        table.add_column(c, justify="right")
    for name, r in rows.items():
        ms = r.get("ms_per_question")
        if ms is None:
            ms = r.get("select_ms_per_question", 0.0) + r.get("generate_ms_per_question", 0.0)
        cells = [f"{r[c]:.3f}" if c in r and c in cols[4:] else (f"{r[c]:.1f}" if c in r else "–") for c in cols]
        table.add_row(name, *cells, f"{ms:.0f}")
    return table


def write_table(write: dict[str, Any]) -> Table:
    """Write quality: reconstruction, free generation, identification and its controls."""
    after = write.get("measured_after", "write")
    table = Table(title=f"write quality ({write['documents']} documents, measured after the {after} phase)")
    for c in ("measure", "value"):
        table.add_column(c)
    table.add_row("reconstruction NLL / token accuracy", f"{write['nll']:.3f} / {write['token_acc']:.3f}")
    if "rouge_l" in write:
        table.add_row("ROUGE-L, free generation (word/char)", f"{write['rouge_l']:.3f} / {write['rouge_l_char']:.3f}")
    labels = {"identification": "identification", "shuffled": "z shuffled", "random_projection": "random projection"}
    for key, label in labels.items():
        if key in write:
            i = write[key]
            table.add_row(
                f"{label}: top-1 / top-5 / margin",
                f"{i['top1']:.3f} / {i['top5']:.3f} / {i['margin_mean']:.3f} (chance {i['chance_top1']:.3f})",
            )
    return table


def eval_pqa(
    data: Path,
    model: Path,
    *,
    k: int,
    baselines: list[str],
    clara: Path | None,
    xrag: Path | None,
    written: Path | None,
    multihop: bool,
    limit: int | None,
    device: str,
    output: Path | None,
) -> None:
    """`korag eval qa --system pqa`: PQA and its baselines in one table, and its write quality."""
    from korag import atomic
    from korag.memory.loop import resolve_device
    from korag.memory.pqa.compare import compare_systems

    corpus, examples = _qa_data(data)
    if limit:
        examples = examples[:limit]
    result = compare_systems(
        model,
        corpus,
        examples,
        k=k,
        baselines=baselines,
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
    out.print(comparison_table(title, result["rows"]))
    out.print(write_table(result["write"]))
    gold = result["rows"]["pqa (gold z)"]
    out.print(
        f"memory per document: {gold['bytes_per_document']:,} bytes of z vs {result['text_bytes_per_document']:,.0f} "
        f"bytes of text (UTF-8); peak memory {gold['peak_memory_mb']:,.0f} MB"
    )
    if output:
        atomic.write_json(output, json.loads(json.dumps(result, default=str)))
        out.print(f"wrote {output}")
