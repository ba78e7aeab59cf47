"""Dense training end to end on a tiny config-built encoder (fast), plus CLI contract tests."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from korag.data.sample import load_sample
from korag.data.schema import Qrels, RetrievalSet
from korag.data.training import training_pairs
from korag.errors import ConfigError, DataError
from korag.models.lora import LoraSettings
from korag.training.callbacks import GradientStatsCallback
from korag.training.config import DenseTrainConfig
from korag.training.dense import train_dense


def _losses(output: Path) -> list[float]:
    states = sorted(
        (output / "checkpoints").glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])
    )
    history = json.loads(states[-1].read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


def test_full_training_lowers_the_loss_and_logs_everything(tiny_encoder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    qa = load_sample()
    cfg = DenseTrainConfig(
        base=str(tiny_encoder),
        max_steps=40,
        batch_size=16,
        learning_rate=3e-3,
        eval_steps=20,
        logging_steps=2,
        eval_fraction=0.2,
        save_total_limit=3,
        histogram_layers=[r"encoder\.layer\.0\.attention"],
        histogram_steps=10,
        seed=3,
    )
    result = train_dense(qa, cfg, tmp_path / "out", show_progress=False)
    losses = _losses(tmp_path / "out")
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses
    assert result.global_step == 40 and result.dev_queries > 0
    assert 0 <= result.metrics["cosine_mrr@10"] <= 1 and result.best_checkpoint
    assert (result.model_dir / "modules.json").is_file() and result.adapter_dir is None
    info = json.loads((tmp_path / "out" / "training.json").read_text())
    assert info["config"]["learning_rate"] == 3e-3 and info["train_pairs"] == result.train_pairs
    events = EventAccumulator(str(tmp_path / "out" / "tensorboard"), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/epoch"} <= scalars
    assert any(t.startswith("eval/dev_cosine_mrr@10") for t in scalars)
    assert any(t.startswith("grad_norm/encoder.layer.0") for t in scalars)
    assert any(t.startswith("grad/") for t in events.Tags()["histograms"])


def test_lora_saves_adapter_and_merged_model(tiny_encoder, tmp_path):
    from sentence_transformers import SentenceTransformer

    cfg = DenseTrainConfig(
        base=str(tiny_encoder),
        lora=LoraSettings(r=4, alpha=32, dropout=0.0),
        max_steps=8,
        batch_size=16,
        learning_rate=5e-3,
        eval_steps=4,
        eval_fraction=0.2,
    )
    result = train_dense(load_sample(), cfg, tmp_path / "out", show_progress=False)
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert not (result.model_dir / "adapter_config.json").exists()
    texts = ["query: 세종대왕", "passage: 한강은 서울을 가로지른다"]
    merged = SentenceTransformer(str(result.model_dir)).encode(texts)
    adapter = SentenceTransformer(str(result.adapter_dir)).encode(texts)
    base = SentenceTransformer(str(tiny_encoder)).encode(texts)
    np.testing.assert_allclose(merged, adapter, atol=1e-5)
    assert np.abs(merged - base).max() > 1e-4  # the adapter changed something


def test_training_pairs_and_bad_training_input(tiny_encoder, tmp_path):
    rs = load_sample().to_retrieval_set()
    pairs = training_pairs(rs)
    assert len(pairs) == len(rs.queries) and pairs[0].positive.startswith(rs.corpus.get(pairs[0].positive_id).title)
    empty = RetrievalSet(rs.corpus, rs.queries, Qrels({q: dict.fromkeys(rs.qrels[q], 0) for q in rs.qrels}))
    with pytest.raises(DataError, match="no training pairs"):
        train_dense(empty, DenseTrainConfig(base=str(tiny_encoder), max_steps=2, eval_fraction=0), tmp_path / "o")
    with pytest.raises(ConfigError, match="set both the query and the passage prefix"):
        train_dense(rs, DenseTrainConfig(base=str(tiny_encoder), max_steps=2, query_prefix="q: "), tmp_path / "o2")
    with pytest.raises(ConfigError, match="mini_batch_size"):
        train_dense(
            rs,
            DenseTrainConfig(base=str(tiny_encoder), loss="cached-mnrl", batch_size=4, mini_batch_size=8),
            tmp_path / "o3",
        )


def test_gradient_callback_skips_unplottable_gradients():
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)
            self.b = torch.nn.Linear(3, 3)
            self.c = torch.nn.Linear(3, 3)

    class Writer:
        def __init__(self):
            self.hist, self.scalars = [], []

        def add_histogram(self, tag, values, step):
            assert np.isfinite(values).all() and values.std() > 0
            self.hist.append(tag)

        def add_scalar(self, tag, value, step):
            self.scalars.append(tag)

        def flush(self):
            pass

    m = Tiny()
    m.a.weight.grad = torch.randn(3, 3)
    m.b.weight.grad = torch.full((3, 3), float("nan"))
    m.c.weight.grad = torch.zeros(3, 3)  # zero variance
    w = Writer()
    cb = GradientStatsCallback(w, histogram_patterns=[r"weight"], every=1, histogram_every=1)
    state = type("S", (), {"global_step": 0})()
    cb.on_pre_optimizer_step(None, state, None, model=m)
    assert w.hist == ["grad/a.weight"]
    assert cb.skipped >= 2 and "grad_hist/skipped" in w.scalars


def test_train_dense_cli_resumes_after_a_kill(tiny_encoder, sample_beir, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "korag.cli",
        "train",
        "dense",
        str(sample_beir),
        "--base",
        str(tiny_encoder),
        "--output",
        str(out),
        "--full",
        "--epochs",
        "30",
        "--batch-size",
        "8",
        "--set",
        "eval_steps=20",
        "--set",
        "eval_fraction=0.2",
        "--learning-rate",
        "1e-3",
        "--set",
        "seed=5",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    deadline = time.time() + 300
    killed_after = None
    while time.time() < deadline and proc.poll() is None:
        ckpts = [p for p in (out / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        if len(ckpts) >= 2:
            killed_after = max(int(p.name.split("-")[1]) for p in ckpts)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(60)
    assert killed_after is not None, "training finished before it could be interrupted"
    assert not (out / "model").exists()  # nothing final was written by the killed run
    res = run_cli(
        "train",
        "dense",
        str(sample_beir),
        "--base",
        str(tiny_encoder),
        "--output",
        str(out),
        "--full",
        "--epochs",
        "30",
        "--batch-size",
        "8",
        "--set",
        "eval_steps=20",
        "--set",
        "eval_fraction=0.2",
        "--learning-rate",
        "1e-3",
        "--set",
        "seed=5",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    # long phases speak: an estimate after the first steps, and each held-out evaluation
    assert "s/step, about" in res.stderr and "held-out evaluation:" in res.stderr
    info = json.loads((out / "training.json").read_text())
    assert info["resumed_from"] is not None and int(info["resumed_from"].split("-")[1]) >= killed_after
    steps_per_epoch = -(-info["train_pairs"] // 8)
    assert info["global_step"] == 30 * steps_per_epoch
    assert (out / "model" / "modules.json").is_file()


def test_eval_cli_dense_and_tuned_hybrid(tiny_encoder, sample_beir, tmp_path):
    res = run_cli(
        "eval",
        "retrieval",
        str(sample_beir),
        "--retriever",
        "dense",
        "--model",
        str(tiny_encoder),
        "--k",
        "20",
        "--output",
        str(tmp_path / "dense.json"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    dense = json.loads((tmp_path / "dense.json").read_text())
    assert {"mrr@10", "ndcg@10", "recall@1", "recall@10"} <= set(dense["metrics"])
    assert dense["retriever"]["type"] == "dense" and dense["timings"]["queries_per_second"] > 0
    res = run_cli(
        "eval",
        "retrieval",
        str(sample_beir),
        "--retriever",
        "hybrid",
        "--model",
        str(tiny_encoder),
        "--fusion",
        "weighted",
        "--tune-split",
        "train",
        "--k",
        "20",
        "--output",
        str(tmp_path / "h.json"),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    hybrid = json.loads((tmp_path / "h.json").read_text())
    assert len(hybrid["tuning"]["weights"]) == 2 and hybrid["retriever"]["method"] == "weighted"
    bm25 = run_cli("eval", "retrieval", str(sample_beir), "--k", "20", "--output", str(tmp_path / "b.json"))
    assert bm25.returncode == 0
    # weights tuned on other queries: the hybrid is at least close to its strong member (BM25)
    assert hybrid["metrics"]["mrr@10"] >= json.loads((tmp_path / "b.json").read_text())["metrics"]["mrr@10"] - 0.05


def test_cli_errors_for_dense(tiny_encoder, sample_beir, tmp_path):
    res = run_cli("eval", "retrieval", str(sample_beir), "--retriever", "dense")
    assert res.returncode == 2 and "needs --model" in res.stderr
    res = run_cli("eval", "retrieval", str(sample_beir), "--retriever", "dense", "--model", str(tmp_path / "nope"))
    assert res.returncode == 2 and "no such model directory" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(
        "train",
        "dense",
        str(sample_beir),
        "--base",
        str(tiny_encoder),
        "--output",
        str(tmp_path / "o"),
        "--set",
        "query_prefix='query: '",
    )
    assert res.returncode == 2 and "set both the query and the passage prefix" in res.stderr
    res = run_cli(
        "train",
        "dense",
        str(sample_beir),
        "--base",
        str(tiny_encoder),
        "--output",
        str(tmp_path / "o"),
        "--batch-size",
        "1",
    )
    assert res.returncode == 2 and "batch_size" in res.stderr


def test_resuming_under_other_settings_is_refused(tiny_encoder, tmp_path):
    qa = load_sample()
    cfg = DenseTrainConfig(base=str(tiny_encoder), max_steps=2, batch_size=8, eval_fraction=0, eval_steps=1)
    train_dense(qa, cfg, tmp_path / "o", show_progress=False)
    changed = cfg.model_copy(update={"learning_rate": 1e-3, "max_steps": 4})
    with pytest.raises(ConfigError, match=r"different settings \(learning_rate, max_steps\)"):
        train_dense(qa, changed, tmp_path / "o", show_progress=False)
    # starting over is always allowed, and drops the old checkpoints
    result = train_dense(qa, changed, tmp_path / "o", show_progress=False, resume=False)
    assert result.resumed_from is None and result.global_step == 4
