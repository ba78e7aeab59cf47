"""GPL: margins labelled by a cross-encoder teacher, and MarginMSE training of a dense student."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from korag.data.sample import load_sample
from korag.data.schema import Qrels, Queries, RetrievalSet
from korag.errors import ConfigError
from korag.training.gpl import GPLTrainConfig, label_margins, mine_examples, student_margins, train_gpl


@pytest.fixture(scope="module")
def teacher(tiny_encoder, tmp_path_factory) -> Path:
    """A tiny cross-encoder: the tiny encoder with a (random, fixed) scoring head."""
    import torch

    from korag.retrieval.rerank import load_cross_encoder

    out = tmp_path_factory.mktemp("teacher") / "ce"
    torch.manual_seed(0)  # the head is drawn at random: the same teacher on every run
    load_cross_encoder(tiny_encoder, new_head=True).save(str(out))
    return out


@pytest.fixture(scope="module")
def generated() -> RetrievalSet:
    """The sample's questions standing in for generated queries (each with its source passage)."""
    qa = load_sample()
    examples = qa.examples[:32]
    queries = Queries([e.id for e in examples], [e.question for e in examples])
    return RetrievalSet(qa.corpus, queries, Qrels({e.id: {e.doc_ids[0]: 1} for e in examples}), name="gen")


def test_margins_equal_teacher_score_differences(teacher):
    from korag.retrieval.rerank import CrossEncoderReranker

    ce = CrossEncoderReranker(teacher, precision="fp32")
    rows = [
        ("세종이 만든 문자는?", "세종은 훈민정음을 창제하였다.", ["부산은 항구 도시이다.", "한강은 서울을 흐른다."]),
        ("부산은 어떤 도시?", "부산은 항구 도시이다.", ["세종은 훈민정음을 창제하였다.", "광합성은 빛을 쓴다."]),
    ]
    margins = label_margins(rows, ce)
    assert margins.shape == (2, 2)
    for (q, pos, negs), m in zip(rows, margins, strict=True):
        pos_score = ce.score(q, [pos])[0]
        expected = [pos_score - ce.score(q, [n])[0] for n in negs]
        np.testing.assert_allclose(m, expected, rtol=1e-4, atol=1e-5)
    assert np.ptp(margins) > 0  # the head is random, not constant: the margins differ
    with pytest.raises(ConfigError, match="same number"):
        label_margins([("q", "p", ["a"]), ("q", "p", ["a", "b"])], ce)


def test_training_moves_student_margins_toward_the_teacher(tiny_encoder, teacher, generated, tmp_path):
    from sentence_transformers import SentenceTransformer

    config = GPLTrainConfig(
        base=str(tiny_encoder),
        teacher=str(teacher),
        hard_negatives=2,
        negatives_from="bm25",  # the dense miner has its own test
        max_steps=6,
        batch_size=8,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        eval_fraction=0.0,
        precision="fp32",
        logging_steps=5,
    )
    out = tmp_path / "gpl"
    result = train_gpl(generated, config, out, show_progress=False)
    examples = [json.loads(line) for line in (out / "gpl-examples.jsonl").read_text(encoding="utf-8").splitlines()[1:]]
    assert len(examples) == result.extra["examples"] == 32
    assert all(len(e["negatives"]) == 2 and e["positive_id"] not in e["negative_ids"] for e in examples)
    from korag.training.gpl import GPLExample

    objs = [
        GPLExample(
            e["query_id"],
            e["query"],
            e["positive_id"],
            e["positive"],
            tuple(e["negative_ids"]),
            tuple(e["negatives"]),
            tuple(e["margins"]),
        )
        for e in examples
    ]
    target = np.array([e.margins for e in objs])
    before = student_margins(SentenceTransformer(str(tiny_encoder)), objs, 20.0, "query: ", "passage: ")
    after = student_margins(SentenceTransformer(str(result.model_dir)), objs, 20.0, "query: ", "passage: ")
    mse_before, mse_after = float(((before - target) ** 2).mean()), float(((after - target) ** 2).mean())
    assert mse_after < 0.7 * mse_before, (mse_before, mse_after)
    assert result.global_step == 6 and (out / "tensorboard").is_dir() and (out / "training.json").is_file()
    assert json.loads((out / "training.json").read_text())["extra"]["teacher"] == str(teacher)
    # the same data again: the labelled examples are reused (labelling is the slow part)
    from korag.data.training import split_queries
    from korag.training.gpl import prepare_examples

    train, _ = split_queries(generated, config.eval_fraction, config.seed)
    reused, was_reused = prepare_examples(train, config, out)
    assert was_reused and [e.margins for e in reused] == [e.margins for e in objs]
    changed = config.model_copy(update={"hard_negatives": 1})
    assert not prepare_examples(train, changed, out)[1]


def test_mining_uses_bm25_and_the_dense_model(tiny_encoder, teacher, generated):
    config = GPLTrainConfig(base=str(tiny_encoder), teacher=str(teacher), hard_negatives=3, negatives_from="both")
    examples = mine_examples(generated, config)
    assert len(examples) == len(generated.queries)
    assert all(len(set(e.negative_ids)) == 3 and e.positive_id not in e.negative_ids for e in examples)


def test_cli_synth_gpl(tiny_encoder, teacher, tmp_path):
    from conftest import run_cli
    from korag.data.synthetic import SyntheticQuery, SyntheticSet

    qa = load_sample()
    queries = tmp_path / "q.jsonl"
    SyntheticSet(
        qa.corpus, [SyntheticQuery(f"g{e.id}", e.question, e.doc_ids[0], "llm-question") for e in qa.examples[:24]]
    ).save_jsonl(queries)
    out = tmp_path / "gpl"
    args = ["synth", "gpl", "builtin:sample", "--teacher", str(teacher), "--base", str(tiny_encoder), "-o", str(out)]
    r = run_cli(
        *args,
        "--queries",
        str(queries),
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--set",
        "eval_fraction=0.2",
        "--set",
        "negatives_from=bm25",
    )
    assert r.returncode == 0, r.stderr
    assert "labelled examples" in r.stdout and (out / "model" / "modules.json").is_file()
    assert (out / "gpl-examples.jsonl").is_file() and (out / "tensorboard").is_dir()
    bad = run_cli(*args)
    assert bad.returncode == 2 and "--queries" in bad.stderr
    bad = run_cli("synth", "gpl", "builtin:sample", "--teacher", str(tiny_encoder), "--base", str(tiny_encoder), "-o",
                  str(out), "--queries", str(queries))  # fmt: skip
    assert bad.returncode == 2 and "not a reranker" in bad.stderr
