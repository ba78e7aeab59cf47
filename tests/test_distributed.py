"""Training on 2 CPU processes (gloo) equals training on one, and a killed distributed run resumes.

Each case launches a small worker script (below) with ``torchrun`` or ``accelerate launch`` on
tiny config-built models: the memory models' loop (parametric QA's write phase: a SparseAdam pool
with sparse gradients plus a dense projection) and the dense trainer (sentence-transformers'
trainer, in-batch negatives gathered across processes). Equality is within float tolerance: the
processes sum gradients in another order than one process does.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

WORKER = textwrap.dedent(
    '''
    """Worker: python worker.py KIND DATA_DIR OUTPUT [KILL_AFTER_STEP] (or `run` in-process)."""
    import os, sys, json
    from pathlib import Path


    def run(kind, data, out, kill_after=0):
        data, out, kill_after = Path(data), Path(out), int(kill_after)
        spec = json.loads((data / "spec.json").read_text())
        (run_memory if kind == "memory" else run_dense)(spec, out, kill_after)


    def run_memory(spec, out, kill_after):
        import korag.memory.loop as loop
        from korag.data.schema import Corpus
        from korag.memory.pqa.config import WriteConfig
        from korag.memory.pqa.train import write_documents

        if kill_after:
            real = loop._checkpoint

            def checkpoint_then_die(accelerator, output, step):
                real(accelerator, output, step)
                if step == kill_after:
                    os._exit(3)  # as a kill: no clean-up, no exception handling

            loop._checkpoint = checkpoint_then_die
        corpus = Corpus([f"d{i}" for i in range(len(spec["docs"]))], spec["docs"])
        write_documents(corpus, WriteConfig(**spec["config"]), out, show_progress=False)


    def run_dense(spec, out, kill_after):
        import transformers
        from korag.data.schema import Corpus, Qrels, Queries, RetrievalSet
        from korag.training.config import DenseTrainConfig
        from korag.training.dense import train_dense

        if kill_after:
            real = transformers.Trainer._save_checkpoint

            def save_then_die(self, *a, **kw):
                real(self, *a, **kw)
                if self.state.global_step == kill_after:
                    self.accelerator.wait_for_everyone()
                    os._exit(3)

            transformers.Trainer._save_checkpoint = save_then_die
        n = len(spec["docs"])
        rs = RetrievalSet(
            Corpus([f"d{i}" for i in range(n)], spec["docs"]),
            Queries([f"q{i}" for i in range(n)], spec["queries"]),
            Qrels.from_rows((f"q{i}", f"d{i}", 1) for i in range(n)),
        )
        train_dense(rs, DenseTrainConfig(**spec["config"]), out, show_progress=False)


    if __name__ == "__main__":
        run(*sys.argv[1:])
    '''
)

DOCS = [f"문서 {i}번은 {c} 도시에 대한 이야기이다" for i, c in enumerate("가나다라마바사아자차카타파하거너")]
QUERIES = [f"{c} 도시 이야기는?" for c in "가나다라마바사아자차카타파하거너"]


def _launch(launcher: str, processes: int, worker: Path, *args: str, expect_ok: bool = True):
    from korag.training.distributed import cpu_environment, launch_command

    cmd = launch_command([str(worker), *args], processes, launcher=launcher)  # type: ignore[arg-type]
    r = subprocess.run(cmd, env=cpu_environment(), capture_output=True, text=True, timeout=300)
    if expect_ok and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    if not expect_ok:
        assert r.returncode != 0, "the run was expected to die"
    return r


def _single(worker: Path, *args: str) -> None:
    """The one-process run, in this process (no second start-up of PyTorch)."""
    runpy.run_path(str(worker))["run"](*args)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from korag.models.tiny import build_tiny_causal_lm, build_tiny_encoder

    root = tmp_path_factory.mktemp("distributed")
    worker = root / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    lm = build_tiny_causal_lm(root / "lm", texts=DOCS, hidden=32, layers=1, heads=2, vocab_size=300)
    enc = build_tiny_encoder(root / "enc", texts=DOCS + QUERIES, hidden=32, layers=1, heads=2, vocab_size=300)
    memory = root / "memory-data"
    memory.mkdir()
    # 12 documents, global batch 4: 3 steps an epoch, 6 steps; checkpoints at 2 and 4
    memory_config = {
        "base": str(lm), "pqa": {"m_tokens": 1, "z_dim": 8, "max_doc_tokens": 24}, "max_steps": 6,
        "batch_size": 4, "save_steps": 2, "device": "cpu", "lr_z": 0.05, "lr_projection": 0.01,
        "fit_fast_init": False,
    }  # fmt: skip
    (memory / "spec.json").write_text(json.dumps({"docs": DOCS[:12], "config": memory_config}), encoding="utf-8")
    dense = root / "dense-data"
    dense.mkdir()
    dense_config = {
        "base": str(enc), "batch_size": 8, "max_steps": 4, "eval_fraction": 0.0, "eval_steps": 2,
        "logging_steps": 1, "learning_rate": 5e-4, "device": "cpu", "max_seq_length": 32, "warmup_ratio": 0.0,
        "precision": "fp32",
    }  # fmt: skip
    spec = {"docs": DOCS, "queries": QUERIES, "config": dense_config}
    (dense / "spec.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    single_memory = root / "single-memory"
    _single(worker, "memory", str(memory), str(single_memory))
    return {"root": root, "worker": worker, "memory": memory, "dense": dense, "single_memory": single_memory}


def _pool(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "pqa_state.safetensors"))


def _assert_same_tensors(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def test_memory_loop_on_two_processes_equals_one(setup):
    out = setup["root"] / "torchrun-memory"
    _launch("torchrun", 2, setup["worker"], "memory", str(setup["memory"]), str(out))
    one = json.loads((setup["single_memory"] / "training.json").read_text())
    two = json.loads((out / "training.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1 and two["steps"] == one["steps"] == 6
    loss1 = [h["loss"] for h in one["history"]]
    loss2 = [h["loss"] for h in two["history"]]
    assert loss2 == pytest.approx(loss1, rel=1e-4, abs=1e-5)
    assert loss1[-1] < loss1[0]  # it trained
    _assert_same_tensors(_pool(out), _pool(setup["single_memory"]), atol=1e-5)
    assert (out / "tensorboard").is_dir() and not (out / "checkpoints").exists()


def test_killed_memory_loop_resumes_on_another_process_count(setup):
    out = setup["root"] / "killed-memory"
    _launch("accelerate", 2, setup["worker"], "memory", str(setup["memory"]), str(out), "4", expect_ok=False)
    ckpt = out / "checkpoints" / "step-4"
    assert ckpt.is_dir() and (ckpt / "state.safetensors").is_file() and not (out / "model").exists()
    assert not list((out / "checkpoints").glob(".step-*"))  # no half-written checkpoint left behind
    _single(setup["worker"], "memory", str(setup["memory"]), str(out))  # relaunched on 1 process
    again = json.loads((out / "training.json").read_text())
    assert again["steps"] == 6 and [h["step"] for h in again["history"]] == [5, 6]
    one = json.loads((setup["single_memory"] / "training.json").read_text())
    assert again["last_loss"] == pytest.approx(one["last_loss"], rel=1e-4, abs=1e-5)
    _assert_same_tensors(_pool(out), _pool(setup["single_memory"]), atol=1e-5)


def _dense_history(out: Path) -> list[float]:
    last = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def _dense_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def dense_one(setup) -> Path:
    one = setup["root"] / "dense-1"
    _single(setup["worker"], "dense", str(setup["dense"]), str(one))
    return one


def test_dense_trainer_on_two_processes_equals_one(setup, dense_one):
    one, two = dense_one, setup["root"] / "dense-2"
    _launch("accelerate", 2, setup["worker"], "dense", str(setup["dense"]), str(two))
    info1 = json.loads((one / "training.json").read_text())
    info2 = json.loads((two / "training.json").read_text())
    assert info1["processes"] == 1 and info2["processes"] == 2 and info1["global_step"] == info2["global_step"] == 4
    h1, h2 = _dense_history(one), _dense_history(two)
    assert len(h1) == len(h2) == 4 and h2 == pytest.approx(h1, rel=1e-3, abs=1e-4)
    _assert_same_tensors(_dense_weights(two), _dense_weights(one), atol=1e-4)


def test_killed_dense_run_resumes(setup, dense_one):
    killed = setup["root"] / "dense-killed"
    # killed right after its step-2 checkpoint, relaunched the same way: continues and finishes
    _launch("torchrun", 2, setup["worker"], "dense", str(setup["dense"]), str(killed), "2", expect_ok=False)
    assert (killed / "checkpoints" / "checkpoint-2").is_dir() and not (killed / "training.json").exists()
    _launch("torchrun", 2, setup["worker"], "dense", str(setup["dense"]), str(killed))
    info = json.loads((killed / "training.json").read_text())
    assert info["resumed_from"] == "checkpoint-2" and info["global_step"] == 4
    _assert_same_tensors(_dense_weights(killed), _dense_weights(dense_one), atol=1e-4)
