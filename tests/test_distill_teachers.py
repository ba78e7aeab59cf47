"""Sparse distillation from an ensemble (hybrid) teacher: the margins are the members' margins
put on one scale, and training moves the student's margins toward them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from korag.data.sample import load_sample
from korag.data.training import training_pairs
from korag.errors import ConfigError
from korag.retrieval.bm25 import BM25Retriever
from korag.retrieval.negatives import mine_negatives
from korag.training.sparse import teacher_margins


@pytest.fixture(scope="module")
def pairs():
    rs = load_sample().to_retrieval_set()
    bm25 = BM25Retriever()
    bm25.index(rs.corpus)
    negatives, _ = mine_negatives(rs, [bm25], num=2)
    return rs, [p for p in training_pairs(rs, negatives=negatives) if len(p.negatives) == 2]


def test_ensemble_margins_combine_members_on_one_scale(pairs, tiny_encoder):
    rs, ps = pairs
    bm25 = teacher_margins(ps, "bm25", rs, 64)
    dense = teacher_margins(ps, str(tiny_encoder), rs, 64)
    both = teacher_margins(ps, f"bm25+{tiny_encoder}", rs, 64)
    assert both.shape == bm25.shape == (len(ps), 2)
    expected = (bm25 / bm25.std() + dense / dense.std()) / 2 * bm25.std()
    assert np.allclose(both, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, bm25)  # the dense member moved the targets
    with pytest.raises(ConfigError, match="empty"):
        teacher_margins(ps, "+", rs, 64)


def test_distillation_from_a_hybrid_teacher_moves_the_student_toward_it(tiny_encoder, tmp_path):
    """MarginMSE is the distance between the student's and the teacher's margins: it falls."""
    from korag.training.config import SparseTrainConfig
    from korag.training.sparse import train_sparse

    cfg = SparseTrainConfig(
        base=str(tiny_encoder),
        mode="doc-only",
        max_steps=24,
        batch_size=16,
        learning_rate=3e-3,
        head_learning_rate=2e-2,
        eval_steps=12,
        logging_steps=2,
        eval_fraction=0.2,
        seed=3,
        distill="margin-mse",
        teacher=f"bm25+{tiny_encoder}",
        hard_negatives=1,
    )
    out = tmp_path / "distilled"
    train_sparse(load_sample(), cfg, out, show_progress=False)
    states = sorted((out / "checkpoints").glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    losses = [h["base_loss"] for h in json.loads(states[-1].read_text())["log_history"] if "base_loss" in h]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    info = json.loads((out / "training.json").read_text())
    assert info["config"]["teacher"] == f"bm25+{tiny_encoder}"
