"""One declaration per setting: every field of every trainer's config is reachable from its CLI
command (``--set``, shown by ``--show-config``), and every field of a config a recipe embeds is
reachable from that recipe (``--set section.field=…``) down to the task that runs with it —
except the few a flow decides, which a recipe is refused when it sets them."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from conftest import run_cli
from korag.memory.clara.config import ClaraTrainConfig
from korag.memory.pqa.config import ReadConfig, WriteConfig
from korag.training.config import DenseTrainConfig, SparseTrainConfig
from korag.util.config import field_info, leaf_paths

# A value for fields whose valid values the type alone does not give.
SPECIAL: dict[str, Any] = {
    "negative_ranks": [3, 40],
    "clara.doc_max_length": 512,  # a multiple of compression_rate
    "clara.compression_rate": 16,
    "lora.targets": ["query", "value"],
    "clara.lora.targets": ["q_proj"],
    "histogram_layers": ["layer\\.0"],
    "stage3_trains": ["query_reasoner"],
    "pqa.memory": "encoder",
}


def probe(model: type[BaseModel], path: str) -> Any:
    """A valid value for the field at `path` that differs from its default."""
    if path in SPECIAL or (path.split(".", 1)[-1] in SPECIAL and path.startswith("lora")):
        return SPECIAL.get(path, SPECIAL.get(path.split(".", 1)[-1]))
    info = field_info(model, path)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    kind = info.annotation
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:  # X | None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return next(v for v in typing.get_args(kind) if v != default)
    if kind is bool:
        return not default
    lo, hi = -1e9, 1e9
    for m in info.metadata:
        lo = m.gt if isinstance(m, Gt) else m.ge if isinstance(m, Ge) else lo
        hi = m.lt if isinstance(m, Lt) else m.le if isinstance(m, Le) else hi
    if kind is int:
        value = 7 if default in (None, -1) else default + 1
        return value if value < hi else default - 1
    if kind is float:
        value = 0.5 * default if default else 0.25
        return value if lo < value < hi or value == lo == 0 else (lo + hi) / 2
    if kind is str:
        return "probe-value"
    raise AssertionError(f"no probe value for {model.__name__}.{path} ({info.annotation})")


def value_at(obj: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        obj = obj[part]
    return obj


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# -- the command line -------------------------------------------------------------------------
COMMANDS = {
    DenseTrainConfig: ["train", "dense", "data", "-o", "out", "--base", "model"],
    SparseTrainConfig: ["train", "sparse", "data", "-o", "out", "--base", "model"],
    ClaraTrainConfig: ["train", "clara", "data.jsonl", "-o", "out", "--base", "model"],
    WriteConfig: ["train", "pqa", "write", "data.json", "-o", "out"],
    ReadConfig: ["train", "pqa", "read", "data.json", "-o", "out"],
}


@pytest.mark.parametrize("model", list(COMMANDS), ids=lambda m: m.__name__)
def test_every_trainer_setting_is_reachable_from_its_command(model):
    command = COMMANDS[model]
    paths = leaf_paths(model)
    assert len(paths) >= 20
    for path in paths:
        value = probe(model, path)
        setting = f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        r = run_cli(*command, "--set", setting, "--show-config")
        assert r.returncode == 0, (path, r.stderr)
        shown = yaml.safe_load(r.stdout)
        assert value_at(shown, path) == _json(value), (path, value, r.stdout)


def test_flags_set_the_field_they_name():
    r = run_cli(*COMMANDS[DenseTrainConfig], "--epochs", "3", "--lora", "--max-steps", "9", "--show-config")
    shown = yaml.safe_load(r.stdout)
    assert (
        shown["epochs"] == 3 and shown["max_steps"] == 9 and shown["lora"]["r"] == 16 and shown["lora"]["alpha"] == 32
    )
    r = run_cli(*COMMANDS[ReadConfig], "--lora-r", "4", "--selector", "router", "--show-config")
    shown = yaml.safe_load(r.stdout)
    assert shown["lora"] == {"r": 4, "alpha": 8, "dropout": 0.05, "targets": "all-linear"}
    assert shown["selector"]["kind"] == "router"
    # a config file, then flags, then --set
    cfg = yaml.safe_dump({"epochs": 2, "batch_size": 4, "seed": 1})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c.yaml").write_text(cfg)
        r = run_cli(
            *COMMANDS[DenseTrainConfig],
            "-c",
            str(Path(d) / "c.yaml"),
            "--epochs",
            "5",
            "--set",
            "seed=3",
            "--show-config",
        )
    shown = yaml.safe_load(r.stdout)
    assert (shown["epochs"], shown["batch_size"], shown["seed"]) == (5, 4, 3)
    r = run_cli(*COMMANDS[DenseTrainConfig], "--set", "epoch=3", "--show-config")
    assert r.returncode == 2 and "epoch: Extra inputs are not permitted" in r.stderr


# -- recipes --------------------------------------------------------------------------------------
# (recipe, section, config, the task that runs with it, where its parameters hold the config,
#  the fields the flow decides, the data path the recipe needs)
RECIPES = [
    ("korquad-enhance", "train", DenseTrainConfig, "train/v1-human", "config", {"eval_fraction", "keep_checkpoints", "save_total_limit"}, "builtin:sample"),
    ("pqa-korquad", "write", WriteConfig, "pqa-write", "config", set(), "builtin:sample"),
    ("pqa-korquad", "read", ReadConfig, "pqa-read", "config", {"init_from", "encoder"}, "builtin:sample"),
]  # fmt: skip
# what a task records differently from the recipe on purpose (the flow resolves it)
RESOLVED = {("pqa-write", "base"), ("pqa-write", "encoder"), ("train/v1-human", "base")}


@pytest.mark.parametrize("recipe,section,model,task,key,owned,data", RECIPES, ids=[f"{r[0]}:{r[1]}" for r in RECIPES])
def test_every_embedded_setting_is_reachable_from_its_recipe(
    recipe, section, model, task, key, owned, data, monkeypatch
):
    from korag.errors import ConfigError
    from korag.pipeline.job import prepare

    # resolving the default LLM's identity needs its package, not the model: keep planning cheap
    monkeypatch.setattr("korag.pipeline.flows.pqa._identity", lambda spec: f"id:{spec}")
    monkeypatch.setattr("korag.synth.llm.llm_identity", lambda spec: f"id:{spec}")
    reached = 0
    for path in leaf_paths(model):
        value = probe(model, path)
        setting = (
            f"{section}.{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        )
        sets = [f"data.path={data}", setting]
        if path.split(".")[0] in owned:
            with pytest.raises(ConfigError, match="flow"):
                prepare(recipe, sets)
            continue
        parsed, tasks = prepare(recipe, sets)
        assert _json(value_at(getattr(parsed, section).model_dump(mode="json"), path)) == _json(value), path
        params = next(t for t in tasks if t.id == task).params[key]
        if (task, path) not in RESOLVED:
            assert value_at(params, path) == _json(value), (task, path, params)
        reached += 1
    assert reached == len(leaf_paths(model)) - len([p for p in leaf_paths(model) if p.split(".")[0] in owned])


def test_old_pqa_recipe_keys_are_read_in_their_new_places(tmp_path):
    from korag.pipeline.recipe import load_recipe

    old = {
        "name": "old", "flow": "pqa", "data": {"path": "builtin:sample"}, "base": "gemma3-270m", "encoder": "e5-small",
        "write": {"m_tokens": 2, "z_dim": 16, "epochs": 1}, "read": {"selector": "router", "lora_r": 4},
    }  # fmt: skip
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    r = load_recipe(path)
    assert (r.write.base, r.write.encoder, r.write.pqa.m_tokens, r.write.pqa.z_dim) == (
        "gemma3-270m",
        "e5-small",
        2,
        16,
    )
    assert r.read.selector.kind == "router" and r.read.lora.r == 4 and r.read.lora.alpha == 8
    assert load_recipe(path, ["read.lora_r=0"]).read.lora is None
