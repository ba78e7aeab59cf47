"""CLaRa mechanism checks with a tiny config-built LM: shapes and slots, embedding replacement,
gradient routing per stage, the straight-through top-k, and a stage-2 overfit that really reads
the compressed documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from korag.eval.comparison import System, find
from korag.memory.clara.config import ClaraConfig
from korag.memory.clara.model import ClaraModel
from korag.memory.clara.topk import differentiable_topk
from korag.models.lora import LoraSettings

COUNTRIES = ["갑국", "을국", "병국", "정국", "무국", "기국", "경국", "신국"]
CITIES = ["가람", "나루", "다솜", "라온", "마루", "바다", "사랑", "아라"]


@pytest.fixture(scope="module")
def facts():
    rng = random.Random(0)
    capitals = CITIES[:]
    rng.shuffle(capitals)
    docs = [f"{c}의 수도는 {k}이다" for c, k in zip(COUNTRIES, capitals, strict=True)]
    questions = [f"{c}의 수도는?" for c in COUNTRIES]
    return docs, questions, capitals


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, facts):
    from korag.models.tiny import build_tiny_causal_lm

    docs, questions, capitals = facts
    texts = docs + questions + [f"Question: {q}\nAnswer: {a}" for q, a in zip(questions, capitals, strict=True)]
    return build_tiny_causal_lm(
        tmp_path_factory.mktemp("clara") / "lm", texts=texts, hidden=64, layers=2, heads=4, vocab_size=400
    )


def _model(lm_dir, adapters=("encoder", "decoder", "query_reasoner"), **kw) -> ClaraModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    cfg = ClaraConfig(doc_max_length=16, compression_rate=4, lora=LoraSettings(r=16, alpha=32, dropout=0.0), **kw)
    return ClaraModel(
        AutoModelForCausalLM.from_pretrained(lm_dir), AutoTokenizer.from_pretrained(lm_dir), cfg, adapters=adapters
    )


def test_config_shapes_and_validation():
    assert ClaraConfig(doc_max_length=256, compression_rate=32).n_mem == 8
    assert ClaraConfig(doc_max_length=256, compression_rate=128).n_mem == 2
    with pytest.raises(ValueError, match="multiple of compression_rate"):
        ClaraConfig(doc_max_length=100, compression_rate=32)


def test_memory_slots_and_embedding_replacement(lm_dir, facts):
    docs, questions, _ = facts
    m = _model(lm_dir)
    ids, _ = m.encoder_inputs(docs[:3])
    n = m.config.n_mem
    assert ids.shape[1] == 16 + 1 + n  # doc_max_length + <ENC> + memory tokens
    assert (ids[:, -n:] == m.mem_ids).all()  # memory tokens at the end of every row
    memory, mse = m.compress(docs[:3])
    assert memory.shape == (3, n, m.lm.config.hidden_size) and mse.item() > 0
    k = 3
    dec_ids, _, _ = m.decoder_batch([m.qa_prompt(questions[0], k)])
    marker = torch.arange(k * n * memory.shape[-1], dtype=torch.float32).reshape(1, k * n, -1)
    embeds = m.embed_with_memory(dec_ids, marker)
    positions = torch.isin(dec_ids[0], m.mem_ids).nonzero().flatten()
    assert len(positions) == k * n
    assert torch.equal(embeds[0, positions], marker[0])  # exactly at the memory positions, in order
    plain = m.lm.get_input_embeddings()(dec_ids)
    others = ~torch.isin(dec_ids[0], m.mem_ids)
    assert torch.equal(embeds[0, others], plain[0, others])  # nothing else changed
    with pytest.raises(ValueError, match="memory positions"):
        m.embed_with_memory(dec_ids, marker[:, : n * 2])


def test_gradients_reach_what_each_stage_trains(lm_dir, facts):
    docs, questions, capitals = facts
    m = _model(lm_dir)

    def touched(loss) -> set[str]:
        m.lm.zero_grad(set_to_none=True)
        loss.backward()
        names = set()
        for name, p in m.lm.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0:
                names |= {a for a in ("encoder", "decoder", "query_reasoner") if f".{a}." in name and "lora_B" in name}
        emb = m.lm.get_input_embeddings().weight.grad
        if emb is not None:
            rows = emb.abs().sum(1).nonzero().flatten().tolist()
            assert rows == [] or rows == m.mem_ids.tolist()  # only the memory rows of the embeddings learn
            if rows:
                names.add("memory rows")
        return names

    loss, _ = m.stage2_loss(questions[:2], [[d] for d in docs[:2]], capitals[:2])
    # the first step's LoRA-B gradients are what moves an adapter initialised at zero
    assert touched(loss) == {"encoder", "decoder", "memory rows"}
    loss, idx = m.stage3_loss(questions[:2], [docs[:4], docs[2:6]], capitals[:2], k=2)
    got = touched(loss)
    assert "query_reasoner" in got and "decoder" in got and "encoder" not in got
    assert idx.shape == (2, 2)


def test_straight_through_topk_is_hard_forward_and_soft_backward():
    torch.manual_seed(0)
    scores = torch.randn(4, 7, requires_grad=True)
    w, idx = differentiable_topk(scores, 3, temperature=0.5)
    hard = torch.nn.functional.one_hot(torch.topk(scores, 3).indices, 7).float()
    assert torch.equal(w.detach(), hard) and torch.equal(idx, torch.topk(scores, 3).indices)
    (w * torch.randn(4, 3, 7)).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="k must be between"):
        differentiable_topk(scores, 8)


@pytest.mark.slow
def test_stage2_overfits_and_reads_the_compressed_documents(lm_dir, facts):
    docs, questions, capitals = facts
    m = _model(lm_dir, adapters=("encoder", "decoder"))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(150):
        loss, _ = m.stage2_loss(questions, [[d] for d in docs], capitals)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        memory, _ = m.compress(docs)

    def em(pred):
        return sum(p == a for p, a in zip(pred, capitals, strict=True)) / len(capitals)

    assert em(m.answer(questions, memory, 1, max_new_tokens=4)) >= 0.9
    assert em(m.answer(questions, torch.zeros_like(memory), 1, max_new_tokens=4)) <= 0.5
    # another document's vectors: the answer follows the document it was given, not the question
    shifted = m.answer(questions, memory.roll(1, 0), 1, max_new_tokens=4)
    follows = sum(p == capitals[i - 1] for i, p in enumerate(shifted)) / len(capitals)
    assert follows >= 0.5 and em(shifted) <= 0.5


# -- data -------------------------------------------------------------------------------------
CLARA_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "clara" / "pretrain_data.jsonl"


def test_reads_the_real_stage1_file():
    from korag.memory.clara.data import read_clara_jsonl

    if not CLARA_DATA.is_file():
        pytest.skip(f"{CLARA_DATA} is not here")
    records = read_clara_jsonl(CLARA_DATA, 1)
    assert len(records) == 1000
    assert all(len(r.questions) == len(r.answers) >= 1 and len(r.docs) == 1 for r in records)


@pytest.mark.parametrize(
    ("record", "stage", "expected"),
    [
        ({"question": "q", "docs": ["d"], "answer": "a"}, 2, ("a",)),
        ({"question": "q", "context": ["d"], "answers": ["a", "b"]}, 2, ("a",)),
        ({"question": "q", "content": ["d"], "golden_answers": ["g", "h"]}, 2, ("g",)),
        ({"question": "q", "docs": ["d"], "gold_answer": "x", "answer": "a"}, 2, ("a",)),
        ({"question": "q", "docs": ["d", "e"], "gold_answer": "x", "pos_index": [1]}, 3, ("x",)),
        ({"data_type": "paraphrase", "docs": ["d"], "answer": "p"}, 1, ("p",)),
    ],
)
def test_every_answer_and_document_alias(tmp_path, record, stage, expected):
    from korag.memory.clara.data import read_clara_jsonl, write_clara_jsonl

    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    (ex,) = read_clara_jsonl(path, stage)
    assert ex.answers == expected
    write_clara_jsonl([ex], tmp_path / "again.jsonl", stage)
    assert read_clara_jsonl(tmp_path / "again.jsonl", stage) == [ex]


@pytest.mark.parametrize(
    ("record", "stage", "message"),
    [
        ({"question": "q", "documents": ["d"], "answer": "a"}, 2, "line 1: no documents"),
        ({"question": "q", "docs": "d", "answer": "a"}, 2, "field 'docs': expected a list of strings"),
        ({"question": "q", "docs": ["d"]}, 2, "line 1: no answer"),
        ({"question": ["a", "b"], "docs": ["d"], "answers": ["x"]}, 1, "2 question"),
        ({"question": "q", "docs": ["d"], "answer": "a"}, 3, "field 'pos_index': stage 3 needs"),
        ({"question": "q", "docs": ["d"], "answer": "a", "pos_index": [3]}, 3, "index 3 is outside"),
        ({"data_type": "summary", "docs": ["d"], "answer": "a"}, 1, "field 'data_type'"),
    ],
)
def test_bad_records_name_line_and_field(tmp_path, record, stage, message):
    from korag.errors import DataError
    from korag.memory.clara.data import read_clara_jsonl

    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_clara_jsonl(path, stage)


def test_stage_data_from_a_qa_set():
    from korag.data.sample import load_sample
    from korag.memory.clara.data import retrieval_examples, stage1_from_qa
    from korag.retrieval.bm25 import BM25Retriever

    qa = load_sample()
    s1 = stage1_from_qa(qa)
    assert len(s1) == len({e.doc_ids[0] for e in qa.examples})
    assert sum(len(r.questions) for r in s1) == len(qa.examples)
    bm25 = BM25Retriever("whitespace")  # a weak retriever, so some gold passages are missed
    bm25.index(qa.corpus)
    normal = retrieval_examples(qa, bm25, k=2)
    oracle = retrieval_examples(qa, bm25, k=2, oracle=True)
    assert all(len(r.docs) == 2 for r in normal + oracle)
    missed = sum(not r.positives for r in normal)
    assert missed > 0 and all(r.positives for r in oracle)
    contents = dict(zip(qa.corpus.ids, qa.corpus.contents(), strict=True))
    for e, r in zip(qa.examples, oracle, strict=True):
        assert all(r.docs[i] == contents[e.doc_ids[0]] for i in r.positives)


# -- training and persistence -----------------------------------------------------------------
def test_three_stages_train_save_load_and_resume(lm_dir, facts, tmp_path, monkeypatch):
    from korag.errors import ConfigError
    from korag.memory.clara import train as train_mod
    from korag.memory.clara.config import ClaraTrainConfig
    from korag.memory.clara.data import ClaraExample
    from korag.memory.clara.store import load_clara
    from korag.memory.clara.train import train_clara

    docs, questions, capitals = facts
    cc = ClaraConfig(doc_max_length=16, compression_rate=4, top_k=1, lora=LoraSettings(r=8, alpha=32, dropout=0.0))
    s1 = [ClaraExample((q,), (a,), (d,)) for q, a, d in zip(questions, capitals, docs, strict=True)]
    cfg1 = ClaraTrainConfig(
        base=str(lm_dir), stage=1, clara=cc, max_steps=6, batch_size=4, save_steps=2, learning_rate=1e-3
    )

    # an interrupted run leaves checkpoints; the next run continues from the latest one
    calls = {"n": 0}
    real = train_mod._step_loss

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_mod, "_step_loss", failing)
    with pytest.raises(KeyboardInterrupt):
        train_clara(s1, cfg1, tmp_path / "s1", show_progress=False)
    assert (tmp_path / "s1" / "checkpoints" / "step-4").is_dir()
    monkeypatch.setattr(train_mod, "_step_loss", real)
    with pytest.raises(ConfigError, match="different settings"):
        train_clara(s1, cfg1.model_copy(update={"batch_size": 2}), tmp_path / "s1", show_progress=False)
    r1 = train_clara(s1, cfg1, tmp_path / "s1", show_progress=False)
    assert r1["steps"] == 6 and len(r1["history"]) == 2  # only steps 5 and 6 ran again

    s3 = [
        ClaraExample((q,), (a,), tuple(docs[:4]), "qa", (i,))
        for i, (q, a) in enumerate(zip(questions[:4], capitals[:4], strict=True))
    ]
    cfg3 = ClaraTrainConfig(
        base=str(lm_dir), stage=3, init_from=str(tmp_path / "s1" / "model"), clara=cc, max_steps=2, batch_size=2
    )
    r3 = train_clara(s3, cfg3, tmp_path / "s3", show_progress=False)
    assert "recall@1" in r3["history"][-1]
    with pytest.raises(ConfigError, match="pos_index"):
        train_clara([ClaraExample(("q",), ("a",), ("d",))], cfg3, tmp_path / "bad", show_progress=False)

    # what was saved is what was trained: the same answers after loading
    model, info = load_clara(tmp_path / "s1" / "model")
    again, _ = load_clara(tmp_path / "s1" / "model")
    assert info["stage"] == 1
    with torch.no_grad():
        mem, _ = model.compress(docs[:3])
        mem2, _ = again.compress(docs[:3])
    assert torch.allclose(mem, mem2)
    assert model.answer(questions[:3], mem, 1, max_new_tokens=3) == again.answer(
        questions[:3], mem2, 1, max_new_tokens=3
    )


def test_cli_trains_a_stage_from_ml_clara_jsonl(lm_dir, facts, tmp_path):
    from conftest import run_cli

    docs, questions, capitals = facts
    data = tmp_path / "s1.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"question": [q], "answers": [a], "docs": [d]}, ensure_ascii=False)
            for q, a, d in zip(questions, capitals, docs, strict=True)
        ),
        encoding="utf-8",
    )
    args = ["train", "clara", str(data), "--stage", "1", "--base", str(lm_dir), "-o", str(tmp_path / "run")]
    small = [
        "--doc-max-length",
        "16",
        "--compression-rate",
        "4",
        "--set",
        "clara.lora.r=4",
        "--max-steps",
        "2",
        "--device",
        "cpu",
    ]
    r = run_cli(*args, *small)
    assert r.returncode == 0, r.stderr
    assert "stage 1: 2 steps on 8 records" in r.stdout
    assert (tmp_path / "run" / "model" / "clara.json").is_file() and any((tmp_path / "run" / "tensorboard").iterdir())
    bad = run_cli(*args, "--doc-max-length", "10", "--compression-rate", "4")
    assert bad.returncode == 2 and "multiple of compression_rate" in bad.stderr


# -- mechanism: the MSE term and end-to-end retrieval -----------------------------------------
def _stage1_mse(lm_dir, docs, questions, capitals, weight: float, steps: int = 40) -> float:
    m = _model(lm_dir, adapters=("encoder", "decoder"), mse_weight=weight)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        loss, _ = m.stage1_loss(docs, [[q] for q in questions], [[a] for a in capitals])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return m.compress(docs)[1].item()


@pytest.mark.slow
def test_mse_term_shrinks_the_memory_document_gap(lm_dir, facts):
    docs, questions, capitals = facts
    without = _stage1_mse(lm_dir, docs, questions, capitals, 0.0)
    with_mse = _stage1_mse(lm_dir, docs, questions, capitals, 1.0)
    assert with_mse < 0.5 * without


STAGE2_CLARA = ClaraConfig(
    doc_max_length=16, compression_rate=4, top_k=1, lora=LoraSettings(r=16, alpha=32, dropout=0.0)
)


@pytest.fixture(scope="module")
def stage2_dir(lm_dir, facts, tmp_path_factory) -> Path:
    """A stage-2 model that answers the facts from their compressed documents (150 steps)."""
    from korag.memory.clara.config import ClaraTrainConfig
    from korag.memory.clara.data import ClaraExample
    from korag.memory.clara.train import train_clara

    docs, questions, capitals = facts
    s2 = [ClaraExample((q,), (a,), (d,)) for q, a, d in zip(questions, capitals, docs, strict=True)]
    out = tmp_path_factory.mktemp("clara-s2")
    cfg = ClaraTrainConfig(
        base=str(lm_dir), stage=2, clara=STAGE2_CLARA, max_steps=150, batch_size=8, learning_rate=3e-3
    )
    train_clara(s2, cfg, out, show_progress=False)
    return out / "model"


@pytest.mark.slow
def test_stage3_raises_recall_from_the_answer_loss_alone(lm_dir, facts, stage2_dir, tmp_path):
    from korag.memory.clara.config import ClaraTrainConfig
    from korag.memory.clara.data import ClaraExample
    from korag.memory.clara.inference import ClaraReader
    from korag.memory.clara.store import load_clara
    from korag.memory.clara.train import train_clara

    docs, questions, capitals = facts
    # every question's candidates are all documents, in a different order each time
    rng = random.Random(1)
    s3 = []
    for q, a, d in zip(questions, capitals, docs, strict=True):
        cands = docs[:]
        rng.shuffle(cands)
        s3.append(ClaraExample((q,), (a,), tuple(cands), "qa", (cands.index(d),)))

    def recall(model_dir) -> float:
        model, _ = load_clara(model_dir)
        chosen = ClaraReader(model).choose([e.questions[0] for e in s3], [list(e.docs) for e in s3], 1)
        return sum(c[0] in e.positives for c, e in zip(chosen, s3, strict=True)) / len(s3)

    # a fresh query reasoner (chance-level retrieval) and a frozen generator: whatever the query side
    # learns, it learns from the answer's loss through the straight-through top-k
    cfg3 = ClaraTrainConfig(
        base=str(lm_dir),
        stage=3,
        init_from=str(stage2_dir),
        clara=STAGE2_CLARA,
        max_steps=120,
        batch_size=8,
        learning_rate=3e-3,
        stage3_trains=["query_reasoner"],
        query_init="fresh",
    )
    result = train_clara(s3, cfg3, tmp_path / "s3", show_progress=False)
    before, after = recall(stage2_dir), recall(tmp_path / "s3" / "model")
    assert before <= 0.25 and after >= 0.75, (before, after, result["history"][-1])


def test_reader_caches_compressed_documents_and_runs_baselines(lm_dir, facts, tmp_path):
    from korag.memory.clara.data import ClaraExample
    from korag.memory.clara.inference import ClaraReader, evaluate_clara

    docs, questions, capitals = facts
    m = _model(lm_dir, adapters=("encoder", "decoder", "query_reasoner"), top_k=2)
    reader = ClaraReader(m, identity="test", cache_dir=tmp_path / "cache")
    first = reader.compress(docs[:3])
    assert len(list((tmp_path / "cache").iterdir())) == 3
    fresh = ClaraReader(m, identity="test", cache_dir=tmp_path / "cache")
    calls = {"n": 0}
    real = m.compress
    m.compress = lambda texts: (calls.__setitem__("n", calls["n"] + 1), real(texts))[1]
    assert torch.allclose(fresh.compress(docs[:3]), first) and calls["n"] == 0  # read from disk, not recomputed
    m.compress = real
    examples = [
        ClaraExample((q,), (a,), (d, docs[(i + 1) % 8], docs[(i + 2) % 8]), "qa", (0,))
        for i, (q, a, d) in enumerate(zip(questions[:4], capitals[:4], docs[:4], strict=True))
    ]
    rows = evaluate_clara(reader, examples, k=2)
    assert [r.system for r in rows] == [System.CLARA, System.CLARA_REASONER, System.CLOSED_BOOK, System.FULL_TEXT]
    assert [r.label for r in rows] == [
        "clara (given documents)", "clara (query reasoner picks)", "closed-book", "full-text RAG"
    ]  # fmt: skip
    picks = find(rows, System.CLARA_REASONER)
    assert 0 <= picks["recall@1"] <= 1 and "recall@5" not in picks.metrics
    cb = find(rows, System.CLOSED_BOOK)
    assert cb["compression_nominal"] == 4
    # these facts are shorter than their 4 memory tokens + separator: compression saves nothing here
    assert cb["prompt_tokens_saved"] == pytest.approx(1 - cb["prompt_tokens_clara"] / cb["prompt_tokens_full_text"])
    assert all(len(r["predictions"]) == 4 for r in rows)


@pytest.mark.slow
def test_questions_about_a_pdf_are_answered_from_compressed_passages(lm_dir, facts, stage2_dir, tmp_path):
    from conftest import run_cli
    from korag.data.questions import read_questions_jsonl
    from korag.memory.clara.corpus_qa import answer_recall, questions_over
    from korag.memory.clara.inference import ClaraReader, evaluate_clara
    from korag.memory.clara.store import load_clara
    from test_documents import make_pdf

    docs, questions, capitals = facts
    pdf = make_pdf(tmp_path / "facts.pdf", pages=[docs[:4], docs[4:]])
    qfile = tmp_path / "questions.jsonl"
    qfile.write_text(
        "\n".join(
            json.dumps({"question": q, "answers": [a]}, ensure_ascii=False)
            for q, a in zip(questions, capitals, strict=True)
        )
        + "\n",
        encoding="utf-8",
    )
    asked = read_questions_jsonl(qfile)
    corpus, examples = questions_over(str(pdf), asked, k=1, max_tokens=3, overlap_tokens=0)
    assert len(corpus) == 8 and {d.meta["source_id"] for d in corpus} == {"facts.pdf"}
    assert answer_recall(examples, 1) == 1.0  # BM25 finds each fact's passage
    model, _ = load_clara(stage2_dir)
    rows = evaluate_clara(ClaraReader(model), examples, k=1, baselines=("closed-book",))
    # the passages carry the PDF's title, which training never saw, and still the facts come back
    assert find(rows, System.CLARA)["em_korquad"] >= 75 > find(rows, System.CLOSED_BOOK)["em_korquad"]
    assert find(rows, System.CLARA)["recall@1"] == 1.0

    # the CLI, with a second model at another rate in the same table (barely trained: its row is
    # there to be compared, not to be good)
    from korag.memory.clara.config import ClaraTrainConfig
    from korag.memory.clara.data import ClaraExample
    from korag.memory.clara.train import train_clara

    s2 = [ClaraExample((q,), (a,), (d,)) for q, a, d in zip(questions, capitals, docs, strict=True)]
    rate8 = STAGE2_CLARA.model_copy(update={"compression_rate": 8})
    train_clara(s2, ClaraTrainConfig(base=str(lm_dir), stage=2, clara=rate8, max_steps=2), tmp_path / "r8")
    ws = tmp_path / "ws"
    models = ["--model", str(stage2_dir), "--model", str(tmp_path / "r8" / "model")]
    args = ["eval", "clara", str(qfile), "--corpus", str(pdf), *models, "-w", str(ws), "--chunk-tokens", "3"]
    result = run_cli(*args, "--baselines", "closed-book", "-o", str(tmp_path / "rows.json"))
    assert result.returncode == 0, result.stderr
    assert "8 passages" in result.stdout and "100% of 8 questions" in result.stdout
    # each model compressed the 8 passages once, into the workspace
    assert sorted(len(list(d.glob("*.npy"))) for d in (ws / ".cache" / "clara").iterdir()) == [8, 8]
    saved = json.loads((tmp_path / "rows.json").read_text(encoding="utf-8"))
    assert saved[f"clara (given documents) ×4 {stage2_dir.parent.name}"]["em_korquad"] >= 75
    assert {"clara (given documents) ×8 r8", "closed-book"} <= set(saved) and len(saved) == 5


def test_questions_file_errors_name_line_and_field(tmp_path):
    from korag.data.questions import read_questions_jsonl
    from korag.errors import DataError

    path = tmp_path / "q.jsonl"
    for record, message in [
        ({"question": "q"}, "line 1: field 'answers': no reference answer"),
        ({"question": "", "answer": "a"}, "field 'question': is empty"),
        ({"question": "q", "answers": [1]}, "field 'answers': expected a string or a list"),
        ({"question": "q", "answers": [" "]}, "field 'answers': has no non-empty answer"),
    ]:
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=message):
            read_questions_jsonl(path)
    path.write_text('{"id": 1, "question": "q", "answer": "a"}\n{"id": 1, "question": "r", "answer": "b"}\n')
    with pytest.raises(DataError, match=r"line 2.*duplicate question id '1'"):
        read_questions_jsonl(path)


def test_stage1_trains_paraphrase_records_beside_qa_lines(lm_dir, facts):
    docs, questions, capitals = facts
    m = _model(lm_dir, adapters=("encoder", "decoder"))
    kinds = ["paraphrase"] * 4 + ["qa"] * 4
    qs = [()] * 4 + [(q,) for q in questions[4:]]
    ans = [(d,) for d in docs[:4]] + [(a,) for a in capitals[4:]]
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(150):
        loss, parts = m.stage1_loss(docs, qs, ans, kinds)
        first = first if first is not None else parts["ce"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    # a random frozen LM head keeps the logits flat (cross-entropy plateaus near ln|V| even with every
    # argmax right), so what is checked is what greedy decoding gives back
    assert parts["ce"] < first
    m.eval()
    with torch.no_grad():
        memory, _ = m.compress(docs[:4])
    # the documents come back from their memory tokens alone (autoencoding is paraphrase's limit)
    assert sum(p == d for p, d in zip(m.paraphrase(memory, max_new_tokens=12), docs[:4], strict=True)) >= 3
