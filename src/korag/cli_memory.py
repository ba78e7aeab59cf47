"""`korag train clara`: the three CLaRa training stages from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from korag.errors import ConfigError

out = Console()


def train_clara_cmd(
    data: Annotated[Path, typer.Argument(help="ml-clara JSONL for the stage (see korag.memory.clara.data)")],
    stage: Annotated[int, typer.Option(help="1 compression pre-training, 2 instruction tuning, 3 end to end")],
    base: Annotated[str, typer.Option(help="base causal LM: directory, .gguf file or gemma3-270m")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output directory (model/ inside is the result)")],
    init_from: Annotated[Path | None, typer.Option(help="the previous stage's CLaRa model directory")] = None,
    doc_max_length: Annotated[int, typer.Option(help="document tokens compressed")] = 256,
    compression_rate: Annotated[int, typer.Option(help="tokens per memory token")] = 32,
    top_k: Annotated[int, typer.Option(help="documents per question (stage 3: chosen among the candidates)")] = 5,
    lora_r: Annotated[int, typer.Option(help="LoRA rank of every adapter")] = 16,
    mse_weight: Annotated[float, typer.Option(help="λ of the memory/document MSE")] = 0.1,
    learning_rate: Annotated[float | None, typer.Option(help="default 1e-4 (stages 1, 2) / 5e-6 (stage 3)")] = None,
    epochs: Annotated[float, typer.Option(help="passes over the data")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="stop after this many steps (overrides epochs)")] = -1,
    batch_size: Annotated[int, typer.Option(help="records per step")] = 4,
    save_steps: Annotated[int, typer.Option(help="checkpoint every N steps")] = 100,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in OUTPUT")] = True,
) -> None:
    """Train one CLaRa stage (resumable, TensorBoard logs under OUTPUT/tensorboard)."""
    from korag.cli import _validated
    from korag.memory.clara.data import read_clara_jsonl
    from korag.memory.clara.train import ClaraTrainConfig, train_clara

    if stage not in (1, 2, 3):
        raise ConfigError("--stage must be 1, 2 or 3")
    config = _validated(
        ClaraTrainConfig,
        base=base,
        stage=stage,
        init_from=str(init_from) if init_from else None,
        clara={
            "doc_max_length": doc_max_length,
            "compression_rate": compression_rate,
            "top_k": top_k,
            "lora_r": lora_r,
            "lora_alpha": 2 * lora_r,
            "mse_weight": mse_weight,
        },
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        save_steps=save_steps,
        device=device,
        seed=seed,
    )
    examples = read_clara_jsonl(data, stage)  # type: ignore[arg-type]
    result = train_clara(examples, config, output, resume=resume)
    out.print(
        f"stage {stage}: {result['steps']} steps on {result['examples']} records in {result['seconds']:.0f} s "
        f"({result['device']}); loss {result['first_loss']:.3f} → {result['last_loss']:.3f}; "
        f"model in {output / 'model'}"
    )


def eval_qa_cmd(
    data: Annotated[
        Path,
        typer.Argument(
            help="clara: ml-clara stage-2/3 JSONL (question, docs, answer, pos_index), with --corpus questions "
            "JSONL; pqa: the QA set the model was written from (KorQuAD, SQuAD, HotpotQA, …)"
        ),
    ],
    model: Annotated[
        list[Path],
        typer.Option(help="model directory (the model/ of a training run); clara: repeat to compare (e.g. rates)"),
    ],
    system: Annotated[str, typer.Option(help="clara | pqa (parametric QA and its baselines)")] = "clara",
    clara: Annotated[Path | None, typer.Option(help="pqa: a CLaRa model to add as a row")] = None,
    xrag: Annotated[Path | None, typer.Option(help="pqa: an xRAG-style model (memory=encoder) to add")] = None,
    written: Annotated[
        Path | None,
        typer.Option(help="pqa: measure write quality on this write-phase model (default: --model itself)"),
    ] = None,
    multihop: Annotated[bool, typer.Option(help="pqa: questions need several documents; add iterative hops")] = False,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="answer over this corpus (PDF, text, HTML, folder, JSONL): chunked, BM25-retrieved, compressed"
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(help="documents per question (default: the model's top_k)")] = None,
    chunk_tokens: Annotated[int, typer.Option(help="with --corpus: words per passage")] = 80,
    baselines: Annotated[
        str | None,
        typer.Option(
            help="comma-separated ('' for none); clara: closed-book, full-text (default both); "
            "pqa: closed-book, bm25, dense, hybrid, oracle (default all)"
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="evaluate the first N records")] = None,
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="compressed documents are kept in WORKSPACE/.cache/clara")
    ] = Path("korag-workspace"),
    cache: Annotated[bool, typer.Option(help="reuse and keep compressed documents")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write rows (with predictions) as JSON")] = None,
) -> None:
    """EM/F1 of CLaRa (or parametric QA) against its baselines, with retrieval, compression and latency."""
    from rich.table import Table

    if system == "pqa":
        from korag.cli_pqa import eval_pqa
        from korag.memory.pqa.compare import TEXT_BASELINES

        if len(model) != 1:
            raise ConfigError("--system pqa takes one --model")
        wanted = list(TEXT_BASELINES) if baselines is None else [b.strip() for b in baselines.split(",") if b.strip()]
        eval_pqa(
            data,
            model[0],
            k=k or 1,
            baselines=wanted,
            clara=clara,
            xrag=xrag,
            written=written,
            multihop=multihop,
            limit=limit,
            device=device,
            output=output,
        )
        return
    if system != "clara":
        raise ConfigError("--system must be clara or pqa")
    if baselines is None:
        baselines = "closed-book,full-text"

    from korag import atomic
    from korag.memory.clara.data import read_clara_jsonl
    from korag.memory.clara.inference import ClaraReader, evaluate_clara
    from korag.memory.clara.store import load_clara
    from korag.memory.clara.train import resolve_device
    from korag.pipeline.fingerprint import fingerprint

    models = model
    clara, info = load_clara(models[0], device=resolve_device(device))
    k = k or clara.config.top_k
    if corpus is not None:
        from korag.data.questions import read_questions_jsonl
        from korag.memory.clara.corpus_qa import answer_recall, questions_over

        questions = read_questions_jsonl(data)[:limit] if limit else read_questions_jsonl(data)
        passages, examples = questions_over(str(corpus), questions, k=k, max_tokens=chunk_tokens, show_progress=True)
        out.print(
            f"{corpus}: {len(passages)} passages; BM25 top-{k} holds a reference answer for "
            f"{100 * answer_recall(examples, k):.0f}% of {len(examples)} questions"
        )
    else:
        examples = read_clara_jsonl(data, 2)[:limit] if limit else read_clara_jsonl(data, 2)
    wanted = [b.strip() for b in baselines.split(",") if b.strip()]
    rows: dict[str, dict] = {}
    bases_done: set[str] = set()
    for i, path in enumerate(models):
        if i:
            del clara
            clara, info = load_clara(path, device=resolve_device(device))
        identity = fingerprint(path / "clara_state.pt")
        # compressed vectors depend only on the model and the text, so they outlive any one evaluation
        cache_dir = workspace / ".cache" / "clara" / identity if cache else None
        reader = ClaraReader(clara, identity=identity, cache_dir=cache_dir)
        base = str(info.get("base", ""))
        got = evaluate_clara(reader, examples, k=k, baselines=[] if base in bases_done else wanted, show_progress=True)
        bases_done.add(base)
        for name, row in got.items():
            if len(models) > 1 and name.startswith("clara"):
                name = (
                    f"{name} ×{clara.config.compression_rate} {path.parent.name if path.name == 'model' else path.name}"
                )
            if name in rows:
                raise ConfigError(f"two --model runs would share the row {name!r}; give them distinct directories")
            rows[name] = row
    cols = ["em_squad", "f1_squad", "em_korquad", "f1_korquad", "cover_em_korquad", "recall@1", "recall@5"]
    table = Table(title=f"CLaRa on {corpus or data} ({len(examples)} questions, k={k})")
    table.add_column("run")
    for c in [*cols, "×nominal", "×measured", "prompt tok", "compress s", "retrieve s", "generate s"]:
        table.add_column(c, justify="right")
    for name, r in rows.items():
        cells = [f"{r[c]:.2f}" if c in r and "recall" not in c else (f"{r[c]:.3f}" if c in r else "–") for c in cols]
        clara_row = name.startswith("clara")
        table.add_row(
            name,
            *cells,
            str(r["compression_nominal"]) if clara_row else "–",
            f"{r['compression_measured']:.1f}" if clara_row else "–",
            f"{r['prompt_tokens_clara' if clara_row else 'prompt_tokens_full_text']:.0f}"
            if clara_row or name.startswith("full")
            else "–",
            *(f"{r[t]:.2f}" for t in ("compress_seconds", "retrieve_seconds", "generate_seconds")),
        )
    out.print(table)
    if output:
        atomic.write_json(output, rows)
        out.print(f"wrote {output}")
