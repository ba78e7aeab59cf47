"""Parametric QA mechanism checks on a constructed fact world with a tiny LM pre-trained on a
background world's language (not on the facts under test) and a tiny frozen query encoder:
documents are identifiable from their z and not from a shuffled z, reconstruction grows with the
memory's size, gold memories answer the training facts, learned selectors beat the cosine, and
iterative hops find two-hop evidence that one-hop selection cannot."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from korag.eval.comparison import System, find
from korag.memory.pqa.config import PQAConfig, SelectorConfig
from korag.memory.pqa.synthetic import SyntheticWorld, lm_texts
from korag.models.lora import LoraSettings

WORLD_PEOPLE = 200


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(WORLD_PEOPLE, seed=0)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, world) -> Path:
    from korag.models.tiny import build_tiny_causal_lm, pretrain_tiny_causal_lm

    taken = {p.name for p in world.people} | set(world.mayors.values())
    texts = lm_texts(SyntheticWorld(1500, seed=1, exclude=taken))
    path = build_tiny_causal_lm(
        tmp_path_factory.mktemp("pqa") / "lm",
        texts=texts + world.corpus().texts,
        hidden=64,
        layers=2,
        heads=4,
        vocab_size=800,
    )
    return pretrain_tiny_causal_lm(path, texts, steps=600)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, world) -> Path:
    from korag.models.tiny import build_tiny_encoder

    texts = world.corpus().texts + [e.question for e in world.one_hop() + world.two_hop()]
    return build_tiny_encoder(
        tmp_path_factory.mktemp("pqa") / "encoder", texts=texts, hidden=64, layers=1, heads=2, vocab_size=1200
    )


WRITE = PQAConfig(m_tokens=4, z_dim=32, max_doc_tokens=48)


@pytest.fixture(scope="module")
def written(tmp_path_factory, world, lm_dir, encoder_dir) -> Path:
    """The whole world (200 people, 8 towns) written into z, 600 steps."""
    from korag.memory.pqa.config import WriteConfig
    from korag.memory.pqa.train import write_documents

    out = tmp_path_factory.mktemp("pqa") / "write"
    cfg = WriteConfig(
        base=str(lm_dir),
        pqa=WRITE,
        encoder=str(encoder_dir),
        lr_z=3e-2,
        max_steps=600,
        batch_size=32,
        device="cpu",
        with_title=False,
    )
    write_documents(world.corpus(), cfg, out, show_progress=False)
    return out / "model"


def _reader(model_dir):
    from korag.memory.pqa.inference import PQAReader
    from korag.memory.pqa.query import QueryEmbeddings, load_query_encoder
    from korag.memory.pqa.store import load_pqa

    model, selector, _, info = load_pqa(model_dir)
    return PQAReader(model, selector, QueryEmbeddings(load_query_encoder(info["encoder"]))), info


# -- shared machinery ------------------------------------------------------------------------------
def test_targets_end_with_eos_even_when_pad_is_eos(lm_dir):
    """The origin's pitfall: pad = eos with pad ignored in the loss never teaches the model to stop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from korag.memory.slots import SlotLM

    tok = AutoTokenizer.from_pretrained(lm_dir)
    tok.pad_token = tok.eos_token
    m = SlotLM(AutoModelForCausalLM.from_pretrained(lm_dir), tok, ["<Z>"])
    _, mask, labels = m.decoder_batch(["<Z> 질문", "<Z>"], ["가나다", "라"])
    assert tok.pad_token_id == tok.eos_token_id
    for row in range(2):
        kept = labels[row][labels[row] != -100].tolist()
        assert kept[-1] == tok.eos_token_id  # the stop is a target…
        assert tok.decode(kept[:-1]) == ["가나다", "라"][row]  # …after exactly the target text
    assert (mask[1] == 0).any() and (labels[1][mask[1] == 0] == -100).all()  # padding itself is not


def test_lora_weights_are_found_through_peft_not_by_name(lm_dir):
    from transformers import AutoModelForCausalLM

    from korag.models.lora import add_lora, freeze_base, lora_parameters, named_lora_parameters

    lm = AutoModelForCausalLM.from_pretrained(lm_dir)
    lm.model.flora_scale = torch.nn.Parameter(torch.ones(3))  # a base weight whose name contains "lora"
    add_lora(lm, "reader", LoraSettings(r=4, alpha=8))
    names = {n for _, n, _ in named_lora_parameters(lm)}
    assert names and all(".lora_A.reader" in n or ".lora_B.reader" in n for n in names)
    assert "model.flora_scale" not in names
    freeze_base(lm)
    trainable = {id(p) for p in lm.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in lora_parameters(lm, ["reader"])}


def test_soft_tokens_fill_the_slots_and_match_the_embedding_scale(lm_dir):
    from korag.memory.pqa.model import embedding_rms
    from korag.memory.pqa.store import build_pqa

    torch.manual_seed(0)
    m = build_pqa(str(lm_dir), PQAConfig(m_tokens=3, z_dim=16), n_docs=5)
    assert m.memory().shape == (5, 3, 16) and m.storage_bytes_per_document() == 3 * 16 * 4
    z = m.memory([1, 3])
    ids, _, _ = m.decoder_batch([m.qa_prompt("질문?", 2)])
    embeds = m.embed_with_memory(ids, m.soft_tokens(z.unsqueeze(0)))
    slots = torch.isin(ids[0], m.slot_ids).nonzero().flatten()
    assert len(slots) == 6
    assert torch.allclose(embeds[0, slots], m.soft_tokens(z).reshape(6, -1))
    rms = m.soft_tokens(torch.randn(64, 3, 16) * 0.5).pow(2).mean().sqrt().item()
    assert 0.5 < rms / embedding_rms(m.lm) < 2.0
    with pytest.raises(ValueError, match="m_tokens must be 1"):
        build_pqa(str(lm_dir), PQAConfig(m_tokens=2, z_dim=8, memory="encoder"), 2, encoder_vectors=torch.zeros(2, 8))


def test_rouge_l_counts_korean():
    from korag.eval.generation import rouge_l

    assert rouge_l("서울은 수도이다", "서울은 수도이다") == 1.0
    assert rouge_l("부산", "서울은 수도이다") == 0.0
    assert 0 < rouge_l("서울이 수도", "서울은 수도이다", "char") < 1
    assert rouge_l("", "서울") == 0.0


# -- write phase -----------------------------------------------------------------------------------
def test_documents_are_identified_by_their_z_and_not_by_a_shuffled_one(world, written):
    from korag.memory.pqa.evaluate import write_quality
    from korag.memory.pqa.store import load_pqa

    model, _, _, _ = load_pqa(written)
    docs = world.corpus().texts[:WORLD_PEOPLE]
    q = write_quality(model, docs, identify=WORLD_PEOPLE, regenerate=4, random_projection=False, batch_size=400)
    assert q["identification"]["top1"] >= 0.95, q["identification"]
    assert q["identification"]["margin_mean"] > 0
    assert q["shuffled"]["top1"] <= 3 * q["shuffled"]["chance_top1"], q["shuffled"]  # chance: 1/200
    assert q["shuffled"]["margin_mean"] < 0
    # the same memories read through a projection that never saw them say nothing either
    small = write_quality(model, docs[:40], identify=40, regenerate=0, batch_size=400)
    assert small["random_projection"]["top1"] <= 0.15, small["random_projection"]
    assert small["identification"]["top1"] >= 0.95


def _written_accuracy(lm_dir, docs, m_tokens: int, z_dim: int, steps: int = 300) -> float:
    import random

    from korag.memory.pqa.store import build_pqa

    torch.manual_seed(0)
    model = build_pqa(str(lm_dir), PQAConfig(m_tokens=m_tokens, z_dim=z_dim, max_doc_tokens=48), len(docs))
    opt_z = torch.optim.SparseAdam([model.pool], lr=3e-2)
    opt_p = torch.optim.AdamW(model.projection.parameters(), lr=1e-3)
    rng = random.Random(0)
    for _ in range(steps):
        rows = rng.sample(range(len(docs)), 32)
        loss, _ = model.write_loss([docs[i] for i in rows], model.memory(rows, sparse=True))
        opt_z.zero_grad()
        opt_p.zero_grad()
        loss.backward()
        opt_z.step()
        opt_p.step()
    _, acc = model.document_scores(docs, model.memory())
    return acc.mean().item()


# How far one memory size's accuracy moves with the seed or the CPU's arithmetic (AVX512 with bf16
# kernels vs AVX2/float32, ATEN_CPU_CAPABILITY=avx2 KORAG_BF16=0): at 600 write steps, seeds 0–1
# on both paths, a size spread by up to 0.021 while neighbouring sizes differ by 0.006–0.06, and
# one pair of neighbours swapped by 0.011. A pair may therefore swap within this much; the trend
# over the range does not: m = 16 beat m = 1 by 0.121–0.134 (AVX512) and 0.065–0.075 (AVX2).
NOISE = 0.015


# Memories small enough that their size, not the frozen LM's readability, bounds what comes back
# (with z_dim 16 and m ≥ 4 every size reads back the same ~0.82 and the order is noise).
@pytest.mark.slow
def test_reconstruction_grows_with_memory_tokens(world, lm_dir):
    docs = world.corpus().texts[:64]
    # every other size of the calibration above (1, 2, 4, 8, 16): neighbours here are 4× apart,
    # so their gaps are wider than the noise was measured for, at 3/5 of the suite time
    sizes = (1, 4, 16)
    acc = [_written_accuracy(lm_dir, docs, m, 2, steps=600) for m in sizes]
    assert all(b >= a - NOISE for a, b in itertools.pairwise(acc)), acc
    slope = np.polyfit(np.log2(sizes), acc, 1)[0]
    assert slope > 0.008, (slope, acc)  # about half the slope measured on the least favourable path
    assert acc[-1] - acc[0] > 0.05, acc


@pytest.mark.slow
def test_reconstruction_grows_with_z_dim(world, lm_dir):
    docs = world.corpus().texts[:64]
    acc = [_written_accuracy(lm_dir, docs, 1, z, steps=200) for z in (1, 4, 16)]
    assert all(b >= a - NOISE for a, b in itertools.pairwise(acc)), acc
    assert acc[-1] - acc[0] > 0.03, acc


def test_fast_write_starts_from_the_learned_initialiser_and_improves(world, lm_dir, written):
    from korag.memory.pqa.fast_write import fast_write
    from korag.memory.pqa.store import load_pqa

    model, _, fast, _ = load_pqa(written)
    assert fast is not None  # fitted at the end of the write phase
    new = [SyntheticWorld.person_text(p) for p in SyntheticWorld(12, seed=7, exclude=set()).people]
    z_learned, learned = fast_write(model, new, init=fast, steps=15)
    _, scratch = fast_write(model, new, init=None, steps=15)
    assert learned["nll"][-1] < learned["nll"][0]  # the steps help
    assert learned["nll"][0] < scratch["nll"][0]  # the initialiser starts nearer than noise
    n = model.n_docs
    model.append_memory(z_learned)
    assert model.n_docs == n + len(new) and torch.equal(model.memory()[n:], z_learned)


# -- read phase ------------------------------------------------------------------------------------
def test_gold_memories_answer_the_training_facts(world, written, tmp_path):
    from korag.memory.pqa.config import ReadConfig
    from korag.memory.pqa.evaluate import evaluate_reading
    from korag.memory.pqa.train import read_records, train_read

    questions = world.one_hop()
    cfg = ReadConfig(
        init_from=str(written),
        train_with="gold",
        lora=LoraSettings(r=16, alpha=32, dropout=0.0),
        lr_lm=3e-3,
        lr_projection=1e-3,
        lr_selector=1e-2,
        retrieval_weight=1.0,
        # 800 steps reached EM 98.5 with AVX512/bf16 kernels but 87.7 on the AVX2/float32 path
        # (ATEN_CPU_CAPABILITY=avx2 KORAG_BF16=0); 1200 reach 99.5 and 96.3: above 90 on both
        max_steps=1200,
        batch_size=16,
        device="cpu",
    )
    result = train_read(world.corpus(), questions, cfg, tmp_path / "read", show_progress=False)
    assert result["questions"] == len(questions) == 2 * WORLD_PEOPLE + 8
    reader, info = _reader(tmp_path / "read" / "model")
    rows = evaluate_reading(reader, read_records(questions, info["doc_ids"]), info["doc_ids"], k=1)
    gold, selected = find(rows, System.PQA_GOLD), find(rows, System.PQA_SELECTED)
    assert [r.label for r in rows] == ["pqa (gold z)", "pqa (selected z, top-1)"]
    assert gold["em_korquad"] >= 90, gold["predictions"][:10]
    assert selected["em_korquad_gap_to_gold"] == pytest.approx(gold["em_korquad"] - selected["em_korquad"])
    assert 0 <= selected["recall@1"] <= 1 and selected["bytes_per_document"] == 4 * 32 * 4


def _selector_recall(world, written, kind: str, out: Path) -> float:
    from korag.memory.pqa.config import ReadConfig
    from korag.memory.pqa.evaluate import selection_metrics
    from korag.memory.pqa.train import read_records, train_read

    questions = world.one_hop()
    cfg = ReadConfig(
        init_from=str(written),
        selector=SelectorConfig(kind=kind),
        train_with="gold",
        qa_weight=0.0,  # the selector alone: no LM pass
        retrieval_weight=1.0,
        lr_selector=1e-2,
        lr_projection=0.0,
        max_steps=1000,
        batch_size=32,
        device="cpu",
    )
    train_read(world.corpus(), questions, cfg, out, show_progress=False)
    reader, info = _reader(out / "model")
    return selection_metrics(reader, read_records(questions, info["doc_ids"]), info["doc_ids"])["recall@1"]


@pytest.mark.slow
def test_learned_selectors_beat_the_cosine(world, written, tmp_path):
    recall = {k: _selector_recall(world, written, k, tmp_path / k) for k in ("cosine", "router", "attention")}
    assert recall["router"] > recall["cosine"] + 0.1, recall
    assert recall["attention"] > recall["cosine"] + 0.1, recall


@pytest.mark.slow
def test_iterative_hops_find_two_hop_evidence_one_hop_selection_cannot(world, written, tmp_path):
    """Held-out two-hop questions (a person's home town's mayor): the person's document is
    findable from the question, the town's only from what the first hop says."""
    from korag.memory.pqa.config import ReadConfig
    from korag.memory.pqa.evaluate import evaluate_reading
    from korag.memory.pqa.train import read_records, train_read

    two = world.two_hop()
    train, test = world.one_hop() + two[:100], two[100:]
    read = ReadConfig(
        init_from=str(written), selector=SelectorConfig(kind="attention"), hops="iterative", train_with="gold",
        selector_warmup_steps=1500, lora=LoraSettings(r=16, alpha=32, dropout=0.0), lr_lm=3e-3, lr_selector=1e-3,
        lr_projection=1e-3, retrieval_weight=1.0, max_steps=400, batch_size=16, device="cpu",
    )  # fmt: skip
    train_read(world.corpus(), train, read, tmp_path / "read", show_progress=False)
    assert (tmp_path / "read" / "selector-warmup" / "tensorboard").is_dir()
    reader, info = _reader(tmp_path / "read" / "model")
    rows = evaluate_reading(reader, read_records(test, info["doc_ids"]), info["doc_ids"], multihop=True)
    one_hop, iterative = find(rows, System.PQA_SELECTED, k=2), find(rows, System.PQA_ITERATIVE, k=2)
    assert find(rows, System.PQA_GOLD)["em_korquad"] >= 80
    assert iterative["all_gold_selected"] >= one_hop["all_gold_selected"] + 0.4, (one_hop, iterative)
    assert iterative["em_korquad"] >= one_hop["em_korquad"] + 30


# -- files, resumption, command line ---------------------------------------------------------------
def test_saved_model_round_trips_and_bad_reads_are_clear_errors(world, lm_dir, encoder_dir, tmp_path):
    from korag.errors import ConfigError, ModelError
    from korag.memory.pqa.config import ReadConfig, WriteConfig
    from korag.memory.pqa.store import load_pqa, read_info
    from korag.memory.pqa.train import train_read, write_documents

    corpus = world.corpus().subset(range(12))
    cfg = WriteConfig(
        base=str(lm_dir), pqa=PQAConfig(m_tokens=2, z_dim=8), encoder=str(encoder_dir), max_steps=6,
        batch_size=4, device="cpu",
    )  # fmt: skip
    out = tmp_path / "w"
    write_documents(corpus, cfg, out, show_progress=False)
    assert not (out / "checkpoints").exists()  # a finished run drops its checkpoints
    info = read_info(out / "model")
    assert info["doc_ids"] == corpus.ids and info["config"]["m_tokens"] == 2 and info["encoder"] == str(encoder_dir)
    model, selector, fast, _ = load_pqa(out / "model")
    from safetensors.torch import load_file

    saved = load_file(str(out / "model" / "pqa_state.safetensors"))["pool"]
    assert selector is None and fast is not None and torch.equal(model.pool.detach(), saved)
    with pytest.raises(ConfigError, match="none of the"):  # questions about documents never written
        train_read(world.corpus(), world.two_hop()[150:], ReadConfig(init_from=str(out / "model"), max_steps=1,
                   device="cpu"), tmp_path / "r", show_progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="two or more documents"):
        train_read(corpus, world.one_hop()[:24], ReadConfig(init_from=str(out / "model"), hops="iterative",
                   top_k=2, max_steps=1, device="cpu"), tmp_path / "r", show_progress=False)  # fmt: skip
    with pytest.raises(ModelError, match="not a korag parametric-QA directory"):
        load_pqa(tmp_path)


def test_interrupted_write_resumes_from_its_checkpoint(world, lm_dir, tmp_path, monkeypatch):
    import korag.memory.loop as loop
    from korag.errors import ConfigError
    from korag.memory.pqa.config import WriteConfig
    from korag.memory.pqa.train import write_documents

    corpus = world.corpus().subset(range(8))
    cfg = WriteConfig(base=str(lm_dir), pqa=PQAConfig(m_tokens=1, z_dim=8), max_steps=6, batch_size=4,
                      save_steps=2, device="cpu")  # fmt: skip
    real = loop.shutil.rmtree

    class CrashError(Exception):
        pass

    def crash_at_end(path, *a, **kw):  # the run dies where it would tidy its checkpoints away
        if str(path).endswith("checkpoints"):
            raise CrashError
        return real(path, *a, **kw)

    monkeypatch.setattr(loop.shutil, "rmtree", crash_at_end)
    with pytest.raises(CrashError):
        write_documents(corpus, cfg, tmp_path / "w", show_progress=False)
    monkeypatch.setattr(loop.shutil, "rmtree", real)
    assert loop.latest_checkpoint(tmp_path / "w").name == "step-4"
    again = write_documents(corpus, cfg, tmp_path / "w", show_progress=False)
    assert again["steps"] == 6 and len(again["history"]) == 2  # only steps 5 and 6 ran again
    # a changed setting refuses to continue another run's checkpoints
    monkeypatch.setattr(loop.shutil, "rmtree", crash_at_end)
    with pytest.raises(CrashError):
        write_documents(corpus, cfg, tmp_path / "w3", show_progress=False)
    monkeypatch.setattr(loop.shutil, "rmtree", real)
    with pytest.raises(ConfigError, match="different settings"):
        write_documents(corpus, cfg.model_copy(update={"lr_z": 0.5}), tmp_path / "w3", show_progress=False)


def test_cli_trains_both_phases_and_compares_with_baselines(world, lm_dir, encoder_dir, tmp_path):
    from conftest import run_cli

    data = tmp_path / "world.json"
    examples = world.one_hop()[:40]
    data.write_text(json.dumps(world.hotpotqa(examples), ensure_ascii=False), encoding="utf-8")
    r = run_cli(
        "train", "pqa", "write", str(data), "--base", str(lm_dir), "--encoder", str(encoder_dir),
        "--max-docs", "20", "--m-tokens", "2", "--z-dim", "16", "--max-steps", "20", "--device", "cpu",
        "-o", str(tmp_path / "w"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "write: 20 steps on 20 documents" in r.stdout
    r = run_cli(
        "train", "pqa", "read", str(data), "--init-from", str(tmp_path / "w" / "model"),
        "--selector", "router", "--lora-r", "4", "--max-steps", "4", "--set", "selector_warmup_steps=3", "--device", "cpu", "-o", str(tmp_path / "r"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "read: 4 steps on 40 questions" in r.stdout
    r = run_cli(
        "eval", "pqa", str(data), "--model", str(tmp_path / "r" / "model"), "--device", "cpu",
        "--limit", "8", "--written", str(tmp_path / "w" / "model"), "--output", str(tmp_path / "rows.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "rows.json").read_text(encoding="utf-8"))
    assert result["write"]["measured_after"] == "write" and "measured after the write phase" in r.stdout
    rows = result["rows"]
    assert set(rows) == {
        "pqa (gold z)", "pqa (selected z, top-1)", "closed-book", "BM25-RAG (text, top-1)",
        "dense-RAG (text, top-1)", "hybrid-RAG (text, top-1)", "oracle (gold passages as text)",
    }  # fmt: skip
    assert rows["oracle (gold passages as text)"]["all_gold_selected"] == 1.0
    assert "write quality" in r.stdout and "identification" in r.stdout
    r = run_cli("train", "pqa", "read", str(data), "-o", str(tmp_path / "x"))
    assert r.returncode != 0 and "--init-from" in r.stderr and "Traceback" not in r.stderr


# -- the pqa flow and sweeps ---------------------------------------------------------------------
def _tiny_recipe(tmp_path, world, lm_dir, encoder_dir) -> Path:
    import yaml

    data = tmp_path / "world.json"
    data.write_text(json.dumps(world.hotpotqa(world.one_hop()[:24]), ensure_ascii=False), encoding="utf-8")
    recipe = {
        "name": "tiny-pqa",
        "flow": "pqa",
        "data": {"path": str(data)},
        "base": str(lm_dir),
        "encoder": str(encoder_dir),
        "device": "cpu",
        "write": {"m_tokens": 1, "z_dim": 8, "max_doc_tokens": 48, "max_docs": 12, "max_steps": 8,
                  "batch_size": 4, "with_title": False},
        "read": {"selector": "cosine", "train_with": "gold", "max_steps": 4, "batch_size": 4},
        "eval": {"identify": 6, "regenerate": 2, "baselines": ["closed-book"]},
    }  # fmt: skip
    path = tmp_path / "tiny-pqa.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def test_pqa_recipe_caches_each_phase(world, lm_dir, encoder_dir, tmp_path):
    from korag.pipeline.job import run_job

    recipe, ws = _tiny_recipe(tmp_path, world, lm_dir, encoder_dir), tmp_path / "ws"
    first = run_job(recipe, workspace=ws, show_progress=False)
    assert first.executed == ["load", "encoder", "pqa-write", "pqa-write-eval", "pqa-read", "pqa-eval", "report"]
    path = {o.task_id: o.path for o in first.outcomes}

    def metrics(task: str) -> dict:
        return json.loads((path[task] / "manifest.json").read_text(encoding="utf-8"))["metrics"]

    assert {"em_korquad", "em_korquad_gold", "recall@1"} <= set(metrics("pqa-eval"))
    assert {"identification_top1", "shuffled_top1", "token_acc", "nll"} <= set(metrics("pqa-write-eval"))
    report = (first.report_dir / "report.md").read_text(encoding="utf-8")
    assert report.count("closed-book") == 1 and "measured after the write phase" in report
    # the read phase trained the projection, so the read model's memories are no longer the written ones
    from korag.data.saved import open_dataset
    from korag.errors import ConfigError
    from korag.memory.pqa.compare import measure_write_quality

    qa = open_dataset(path["load"] / "dataset")
    after_read = measure_write_quality(path["pqa-read"] / "model", qa.corpus, identify=6, regenerate=0)
    assert after_read["measured_after"] == "read" and after_read["nll"] != metrics("pqa-write-eval")["nll"]
    with pytest.raises(ConfigError, match="other documents"):
        measure_write_quality(path["pqa-write"] / "model", qa.corpus, identify=0, regenerate=0, doc_ids=["x"])
    assert run_job(recipe, workspace=ws, show_progress=False).executed == []
    # a read-phase setting re-runs the read phase and what follows, never the write phase or its quality
    again = run_job(recipe, workspace=ws, overrides=["read.selector=router"], show_progress=False)
    assert again.executed == ["pqa-read", "pqa-eval", "report"]


def test_sweep_runs_each_point_once_and_merges_seeds(world, lm_dir, encoder_dir, tmp_path):
    from korag.errors import ConfigError
    from korag.pipeline.sweep import parse_grid, run_sweep

    recipe, ws = _tiny_recipe(tmp_path, world, lm_dir, encoder_dir), tmp_path / "ws"
    metrics = ["identification_top1", "token_acc", "em_korquad_gold"]
    result = run_sweep(recipe, ["m_tokens=1,2 seed=0,1"], workspace=ws, metrics=metrics, show_progress=False)
    assert len(result.points) == 4 and [p["m_tokens"] for p in result.points] == [1, 1, 2, 2]
    assert [(r["m_tokens"], r["seeds"]) for r in result.rows] == [(1, 2), (2, 2)]
    for r in result.rows:
        members = [p["token_acc"] for p in result.points if p["m_tokens"] == r["m_tokens"]]
        assert r["token_acc"] == pytest.approx(sum(members) / 2)
        assert r["token_acc_std"] == pytest.approx(abs(members[0] - members[1]) / 2)
    assert result.executed.count("load") == 1 and result.executed.count("pqa-write") == 4  # the seed changes z
    assert {"md", "json", "png:m_tokens"} <= set(result.files) and result.files["png:m_tokens"].stat().st_size > 0
    assert "± " in result.files["md"].read_text(encoding="utf-8")
    rerun = run_sweep(recipe, ["m_tokens=1,2", "seed=0,1"], workspace=ws, metrics=metrics, show_progress=False)
    assert rerun.executed == []  # every point is cached
    from conftest import run_cli

    r = run_cli("sweep", str(recipe), "--grid", "m_tokens=1,2", "seed=0,1", "-w", str(ws), "--metric", "token_acc")
    assert r.returncode == 0, r.stderr
    assert "0 stage(s) executed" in r.stdout and "token_acc" in r.stdout and " ± " in r.stdout
    with pytest.raises(ConfigError, match="exactly one setting"):
        run_sweep(recipe, ["lr_z=0.1"], workspace=ws, show_progress=False)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_grid(["m_tokens"])


def test_comparison_puts_clara_and_xrag_beside_pqa(world, lm_dir, encoder_dir, written, tmp_path):
    from korag.memory.clara.config import ClaraConfig, ClaraTrainConfig
    from korag.memory.clara.data import retrieval_examples
    from korag.memory.clara.train import train_clara
    from korag.memory.pqa.compare import compare_systems
    from korag.memory.pqa.config import ReadConfig, WriteConfig
    from korag.memory.pqa.train import train_read, write_documents
    from korag.retrieval.bm25 import BM25Retriever

    corpus, questions = world.corpus(), world.one_hop()[:12]
    read = ReadConfig(init_from=str(written), train_with="gold", max_steps=2, device="cpu")
    train_read(corpus, questions, read, tmp_path / "pqa", show_progress=False)
    # xRAG: z fixed to the encoder's passage embeddings (one token each); only the projection learns
    xcfg = WriteConfig(
        base=str(lm_dir), pqa=PQAConfig(m_tokens=1, z_dim=64, memory="encoder", max_doc_tokens=48),
        encoder=str(encoder_dir), max_steps=2, batch_size=8, device="cpu", with_title=False,
    )  # fmt: skip
    write_documents(corpus, xcfg, tmp_path / "xrag", show_progress=False)
    with pytest.raises(Exception, match="z_dim must be the encoder's width"):
        write_documents(corpus, xcfg.model_copy(update={"pqa": xcfg.pqa.model_copy(update={"z_dim": 8})}),
                        tmp_path / "bad", show_progress=False)  # fmt: skip
    bm25 = BM25Retriever("bigram-stem")
    bm25.index(corpus)
    qa = world.qaset(questions)
    ccfg = ClaraTrainConfig(
        base=str(lm_dir), stage=2, clara=ClaraConfig(doc_max_length=32, compression_rate=8, top_k=1), max_steps=2,
        device="cpu",
    )  # fmt: skip
    train_clara(retrieval_examples(qa, bm25, k=1, oracle=True), ccfg, tmp_path / "clara", show_progress=False)
    result = compare_systems(
        tmp_path / "pqa" / "model", corpus, questions, baselines=["closed-book", "oracle"],
        clara_dir=tmp_path / "clara" / "model", xrag_dir=tmp_path / "xrag" / "model", identify=4, regenerate=1,
    )  # fmt: skip
    rows = result["rows"]
    assert {System.CLARA_RAG, System.XRAG, System.CLOSED_BOOK} <= {r.system for r in rows}
    assert {"CLaRa (BM25 top-1, compressed)", "xRAG (dense top-1, 1 token each)"} <= {r.label for r in rows}
    for row in rows:
        assert len(row["predictions"]) == len(questions) and 0 <= row["em_korquad"] <= 100
    # xRAG reads the dense top-1 and CLaRa the BM25 top-1: their gold-read shares are those retrievers'
    from korag.memory.pqa.baselines import gold_read, retrieved_rows
    from korag.memory.pqa.train import read_records
    from korag.retrieval.dense import DenseRetriever

    records = read_records(questions, corpus.ids)
    bm25_plain, dense = (
        BM25Retriever("bigram-stem", with_title=False),
        DenseRetriever(str(encoder_dir), with_title=False),
    )
    for system, retriever in ((System.XRAG, dense), (System.CLARA_RAG, bm25_plain)):
        retriever.index(corpus)
        expected = gold_read(records, retrieved_rows(retriever, corpus, records, 1))
        assert find(rows, system)["any_gold_selected"] == pytest.approx(expected["any_gold_selected"]), system
    text_bytes = sum(len(t.encode("utf-8")) for t in corpus.texts) / len(corpus)  # written without titles
    assert result["documents"] == len(corpus) and result["text_bytes_per_document"] == pytest.approx(text_bytes)
