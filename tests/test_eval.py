import numpy as np
import pytest

from korag.data.schema import Qrels, Ranking
from korag.errors import ConfigError
from korag.eval.ir import evaluate_ranking, parse_metric
from korag.eval.qa import cover_em, evaluate_answers, exact_match, f1, normalize_answer


def random_case(seed: int, n_queries=60, n_docs=120, k=30):
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    qrels, run = {}, {}
    for q in range(n_queries):
        judged = rng.choice(n_docs, size=rng.integers(1, 8), replace=False)
        qrels[f"q{q}"] = {docs[j]: int(rng.integers(0, 4)) for j in judged}
        if q % 10 == 9:
            continue  # judged but never retrieved: scores 0
        retrieved = rng.choice(n_docs, size=k, replace=False)
        scores = rng.permutation(k).astype(float) + 1.0  # distinct, no ties
        run[f"q{q}"] = {docs[j]: float(s) for j, s in zip(retrieved, scores, strict=True)}
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ir_metrics_match_trec_eval(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = random_case(seed)
    metrics = ["mrr@10", "ndcg@10", "ndcg@5", "recall@1", "recall@20", "precision@5", "map@20", "accuracy@5"]
    ours = evaluate_ranking(Ranking.from_dict(run), Qrels(qrels), metrics)
    # trec_eval's measures; recip_rank has no cut-off, so it gets the run cut at 10
    trec = {
        "ndcg@10": "ndcg_cut_10",
        "ndcg@5": "ndcg_cut_5",
        "recall@1": "recall_1",
        "recall@20": "recall_20",
        "precision@5": "P_5",
        "map@20": "map_cut_20",
        "accuracy@5": "success_5",
    }
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.5,10", "recall.1,20", "P.5", "map_cut.20", "success.5", "recip_rank"}
    )
    full = evaluator.evaluate(run)
    top10 = {q: dict(sorted(r.items(), key=lambda x: -x[1])[:10]) for q, r in run.items()}
    rr = evaluator.evaluate(top10)
    # trec_eval scores only the queries that have a relevant document and a run; absent runs count 0
    judged = [q for q, d in qrels.items() if any(g > 0 for g in d.values())]
    assert ours.query_ids == judged
    for m, v in ours.metrics.items():
        if m == "mrr@10":
            ref = sum(rr[q]["recip_rank"] for q in judged if q in rr) / len(judged)
        else:
            ref = sum(full[q][trec[m]] for q in judged if q in full) / len(judged)
        assert v == pytest.approx(ref, abs=1e-9), m


def test_ir_metrics_by_hand():
    qrels = Qrels({"q1": {"a": 1, "b": 2}, "q2": {"c": 1}, "q3": {"x": 0}})
    ranking = Ranking.from_dict({"q1": {"z": 3.0, "b": 2.0, "a": 1.0}, "q2": {"z": 1.0}})
    r = evaluate_ranking(ranking, qrels, ["mrr@10", "recall@2", "precision@2", "accuracy@1", "map@3", "ndcg@3"])
    assert r.query_ids == ["q1", "q2"]  # q3 has no relevant document
    assert r["mrr@10"] == pytest.approx((1 / 2 + 0) / 2)
    assert r["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert r["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert r["accuracy@1"] == 0.0
    assert r["map@3"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 0) / 2)
    dcg = 2 / np.log2(3) + 1 / np.log2(4)
    idcg = 2 + 1 / np.log2(3)
    assert r["ndcg@3"] == pytest.approx((dcg / idcg + 0) / 2)


def test_metric_names():
    assert parse_metric("NDCG@10") == ("ndcg", 10)
    for bad in ["ndcg", "mrr@0", "foo@3", "recall@x"]:
        with pytest.raises(ConfigError):
            parse_metric(bad)
    with pytest.raises(ConfigError, match="no query has a relevant document"):
        evaluate_ranking(Ranking.from_dict({}), Qrels({"q": {"d": 0}}))


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel Tower!", "squad") == "eiffel tower"
    assert exact_match("the eiffel tower", ["Eiffel Tower"]) == 1.0
    assert f1("eiffel tower in paris", ["the Eiffel Tower"]) == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    assert f1("nothing", ["Eiffel"]) == 0.0


def test_korquad_normalisation_and_character_f1():
    # quotes and brackets become spaces, then ASCII punctuation goes, then spaces collapse
    assert normalize_answer("《훈민정음》(訓民正音)", "korquad") == "훈민정음 訓民正音"
    assert exact_match("‘세종대왕’", ["세종대왕"], "korquad") == 1.0
    assert exact_match("세종대왕", ["세종 대왕"], "korquad") == 0.0  # EM keeps the space …
    assert f1("세종대왕", ["세종 대왕"], "korquad") == 1.0  # … character F1 does not
    # character overlap: 세종 (2 of 3 predicted chars, 2 of 2 gold chars)
    assert f1("세종은", ["세종"], "korquad") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    # SQuAD token F1 sees no overlap at all between particle-bearing words
    assert f1("세종은", ["세종"], "squad") == 0.0
    assert f1("x", ["a", "x"], "korquad") == 1.0  # best over gold answers


def test_evaluate_answers_and_cover_em():
    assert cover_em("정답은 1443년입니다", ["1443년"], "korquad") == 1.0
    r = evaluate_answers({"1": "1443년", "2": "모름"}, {"1": ["1443년", "1443"], "2": ["세종"], "3": ["집현전"]})
    assert r.total == 3 and r.answered == 2
    assert r.metrics["em_korquad"] == pytest.approx(100 / 3)
    assert r.metrics["f1_squad"] == pytest.approx(100 / 3)
