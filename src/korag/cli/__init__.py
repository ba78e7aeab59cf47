"""The `korag` command. Thin: each command parses options, calls a library function, renders.

One module per command group (`run`, `data`, `search`, `collections`, `evaluate`, `train`,
`memory`, `models`, `synth`, `lexicon`); what they share is `korag.cli.common`. Errors caused by input or
configuration (`KoragError`) print as one line on stderr and exit 2; ``--debug`` (anywhere on the
command line, or KORAG_DEBUG=1) shows the traceback instead.

Adding a command: write it in the module of its group (or a new module with its own
``typer.Typer`` added below), import only korag's library inside the function body (start-up
stays fast: ``korag --version`` imports no PyTorch), and take settings from the library's
config model through `korag.cli.common.config_from`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from korag import __version__
from korag.cli import (
    collections,
    data,
    deploy,
    encode,
    evaluate,
    lexicon,
    memory,
    models,
    run,
    search,
    serve,
    synth,
    train,
)
from korag.cli.common import err, out
from korag.errors import KoragError

app = typer.Typer(
    name="korag",
    help=(
        "Korean-first retrieval and question answering over documents: load and convert data, analyse "
        "Korean text, index and search (BM25, dense, learned sparse, hybrid), synthesise training data, train "
        "retrievers and memory models (CLaRa, parametric QA), evaluate and compare, run recipes and sweeps."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"korag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks of errors")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="more log output (repeatable)")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only errors in the log")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    from korag.util.log import configure

    if debug:
        os.environ["KORAG_DEBUG"] = "1"
    configure(-1 if quiet else verbose)


run.register(app)
search.register(app)
encode.register(app)
collections.register(app)
serve.register(app)
app.add_typer(data.app, name="data")
app.add_typer(evaluate.app, name="eval")
app.add_typer(train.app, name="train")
memory.register(train.app, evaluate.app)
app.add_typer(models.app, name="models")
app.add_typer(models.export_app, name="export")
app.add_typer(deploy.app, name="deploy")
app.add_typer(synth.llm_app, name="llm")
app.add_typer(synth.synth_app, name="synth")
app.add_typer(lexicon.app, name="lexicon")


def main() -> None:
    """Console entry point with one-line errors."""
    debug = "--debug" in sys.argv or os.environ.get("KORAG_DEBUG") == "1"
    try:
        app()
    except KoragError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        message = f"{type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)"
        err.print(f"[bold red]internal error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)
