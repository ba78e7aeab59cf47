import json
import multiprocessing
import time
from pathlib import Path

import pytest

from korag.errors import ConfigError, MissingArtifactError
from korag.pipeline.artifacts import Kind
from korag.pipeline.recipe import load_recipe
from korag.pipeline.runner import plan_keys, run_plan
from korag.pipeline.stage import Stage, Task
from korag.pipeline.store import MANIFEST, ArtifactStore
from korag.util.config import apply_overrides

CALLS: list[str] = []


def _source(ctx):
    CALLS.append(ctx.task_id)
    (ctx.out / "value.txt").write_text(str(ctx.params["value"]))
    return {"value": ctx.params["value"]}


def _double(ctx):
    CALLS.append(ctx.task_id)
    v = int((ctx.input("src").path / "value.txt").read_text())
    (ctx.out / "value.txt").write_text(str(2 * v * ctx.params.get("factor", 1)))
    return {"value": 2 * v}


def _crash(ctx):
    (ctx.out / "partial.txt").write_text("half")
    raise RuntimeError("boom")


SOURCE = Stage("source", 1, _source, Kind.OTHER)
DOUBLE = Stage("double", 1, _double, Kind.OTHER)


def plan(value=1, factor=1, version=1):
    double = Stage("double", version, _double, Kind.OTHER)
    return [
        Task("src", SOURCE, {"value": value}),
        Task("a", double, {"factor": factor}, {"src": "src"}),
        Task("b", double, {"factor": 7}, {"src": "src"}),
    ]


def test_second_run_executes_nothing_and_changes_propagate_downstream_only(tmp_path):
    store = ArtifactStore(tmp_path)
    CALLS.clear()
    assert [o.status for o in run_plan(plan(), store)] == ["ran", "ran", "ran"]
    assert [o.status for o in run_plan(plan(), store)] == ["cached", "cached", "cached"]
    # a parameter of task a: only a re-runs
    assert [o.status for o in run_plan(plan(factor=3), store)] == ["cached", "ran", "cached"]
    # a source parameter: everything downstream re-runs
    assert [o.status for o in run_plan(plan(value=5), store)] == ["ran", "ran", "ran"]
    # a stage version bump re-runs that stage's tasks
    assert [o.status for o in run_plan(plan(version=2), store)] == ["cached", "ran", "ran"]
    keys = plan_keys(plan())
    art = store.get("double", keys["a"])
    m = art.manifest
    assert m["params"] == {"factor": 1} and m["inputs"]["src"]["key"] == keys["src"]
    assert m["metrics"] == {"value": 2} and "korag_version" in m and m["seconds"] >= 0


def test_crashed_stage_leaves_nothing_that_reads_as_complete(tmp_path):
    store = ArtifactStore(tmp_path)
    crash = Stage("crashy", 1, _crash, Kind.OTHER)
    tasks = [Task("src", SOURCE, {"value": 1}), Task("c", crash, {}, {"src": "src"})]
    with pytest.raises(RuntimeError, match="boom"):
        run_plan(tasks, store)
    key = plan_keys(tasks)["c"]
    assert store.get("crashy", key) is None
    assert not store.path("crashy", key).exists()
    assert not list((tmp_path / "crashy").glob(".*.tmp"))  # the temporary directory is removed too
    # a directory without manifest (e.g. copied by hand) is never read as a result, and is replaced
    fake = store.path("crashy", key)
    fake.mkdir(parents=True)
    (fake / "partial.txt").write_text("?")
    assert store.get("crashy", key) is None
    assert [e.complete for e in store.entries() if e.stage == "crashy"] == [False]


def test_only_runs_one_task_and_names_a_missing_input(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(MissingArtifactError, match=r"'a' needs the output of stage 'source' \(task 'src'\)"):
        run_plan(plan(), store, only=["a"])
    run_plan(plan(), store, only=["src"])
    statuses = {o.task_id: o.status for o in run_plan(plan(), store, only=["a"])}
    assert statuses == {"src": "cached", "a": "ran", "b": "skipped"}
    with pytest.raises(ConfigError, match="unknown task"):
        run_plan(plan(), store, only=["zzz"])


def test_plan_errors():
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        plan_keys([Task("a", DOUBLE, {}, {"src": "nope"})])
    with pytest.raises(ConfigError, match="cycle"):
        plan_keys([Task("a", DOUBLE, {}, {"src": "b"}), Task("b", DOUBLE, {}, {"src": "a"})])


def _slow(ctx):
    time.sleep(1.0)
    with (Path(ctx.params["log"])).open("a") as fh:
        fh.write("ran\n")
    (ctx.out / "x").write_text("1")


def _worker(workspace: str, log: str) -> None:
    run_plan(
        [Task("slow", Stage("slow", 1, _slow, Kind.OTHER), {"log": log})], ArtifactStore(workspace), show_progress=False
    )


def test_two_processes_run_a_stage_once(tmp_path):
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "ws"), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert log.read_text() == "ran\n"
    entries = ArtifactStore(tmp_path / "ws").entries()
    assert [(e.stage, e.complete) for e in entries] == [("slow", True)]
    assert json.loads((entries[0].path / MANIFEST).read_text())["stage"] == "slow"


def test_recipes_validate_and_override():
    r = load_recipe(None, ["runs.bm25-kiwi.k1=1.2", "runs.extra.tokenizer=mecab", "eval.k=10"], new_runs=True)
    assert r.name == "default"
    assert r.runs["bm25-kiwi"].k1 == 1.2
    assert r.runs["extra"].tokenizer == "mecab" and r.runs["extra"].b == 0.75
    assert r.eval.k == 10
    # a mistyped run name is an error unless new runs are asked for (korag run --new-run)
    with pytest.raises(ConfigError, match=r"no run 'bm25-kiwii' \(runs: bm25-bigram-stem, bm25-kiwi, .*--new-run"):
        load_recipe(None, ["runs.bm25-kiwii.k1=1.2"])
    with pytest.raises(ConfigError, match=r"runs.bm25-kiwi.k2: Extra inputs are not permitted"):
        load_recipe(None, ["runs.bm25-kiwi.k2=1"])
    with pytest.raises(ConfigError, match=r"runs.bm25-kiwi.b: Input should be less than or equal to 1"):
        load_recipe(None, ["runs.bm25-kiwi.b=3"])
    with pytest.raises(ConfigError, match="unknown metric"):
        load_recipe(None, ["eval.metrics=[mrr@10, nope]"])
    with pytest.raises(ConfigError, match=r"needs a data path: korag run korquad --set data\.path="):
        load_recipe("korquad")
    with pytest.raises(ConfigError, match="no built-in recipe"):
        load_recipe("nonexistent-recipe")
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        load_recipe(None, ["novalue"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]", "d=x"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}


def test_sweep_over_a_retrieval_recipe_keeps_each_run_apart(tmp_path):
    from korag.pipeline.sweep import run_sweep

    result = run_sweep(
        "default",
        ["runs.bm25-whitespace.k1=0.5,1.5"],
        workspace=tmp_path / "ws",
        show_progress=False,
    )
    assert [p["runs.bm25-whitespace.k1"] for p in result.points] == [0.5, 1.5]
    first, second = result.points
    # three runs are evaluated by one stage, so each run's figures keep its name
    assert {"bm25-whitespace:mrr@10", "bm25-kiwi:mrr@10", "bm25-bigram-stem:mrr@10"} <= set(first)
    assert first["bm25-kiwi:mrr@10"] == second["bm25-kiwi:mrr@10"]  # untouched run, cached artifact
    assert result.executed.count("load") == 1
