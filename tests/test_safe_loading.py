"""Opening a model directory never runs code from it: model tensors are safetensors, and the
`.pt` files of older korag versions are read with ``weights_only=True``, which refuses a pickle
that would execute something."""

from __future__ import annotations

import pytest
import torch

from korag.errors import ModelError
from korag.models.tensors import flatten, load_state, save_state, unflatten

MARKER = "korag-pickle-ran"


class _Exploit:
    """Unpickling this calls `open(path, "w")`: what a malicious model file could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_nested_state_round_trips_through_safetensors(tmp_path):
    state = {"pool": torch.randn(3, 4), "projection": {"0.weight": torch.randn(2, 2)}, "lora": {}}
    save_state(state, tmp_path / "s.safetensors")
    back = load_state(tmp_path / "s.safetensors")
    assert torch.equal(back["pool"], state["pool"]) and torch.equal(
        back["projection"]["0.weight"], state["projection"]["0.weight"]
    )
    assert unflatten(flatten({"a": {"b": 1}})) == {"a": {"b": 1}}
    with pytest.raises(ValueError, match="may not contain"):
        flatten({"a/b": torch.zeros(1)})


def test_a_planted_pickle_is_refused_and_runs_nothing(tmp_path):
    from korag.memory.clara.store import load_clara
    from korag.memory.pqa.store import load_pqa

    victim = tmp_path / MARKER
    for loader, info, legacy in (
        (load_pqa, "pqa.json", "pqa_state.pt"),
        (load_clara, "clara.json", "clara_state.pt"),
    ):
        model_dir = tmp_path / legacy.split("_")[0]
        model_dir.mkdir()
        # a model directory as an older korag wrote it, whose tensor file carries a payload
        (model_dir / info).write_text('{"base": "nowhere", "config": {}, "doc_ids": [], "adapters": []}')
        torch.save({"pool": _Exploit(str(victim))}, model_dir / legacy)
        with pytest.raises(ModelError, match="refused to load"):
            load_state(model_dir / "missing.safetensors", legacy=model_dir / legacy)
        with pytest.raises(ModelError, match="refused to load"):
            loader(model_dir)
        assert not victim.exists()  # the payload never ran
    # the same file opened the old way (weights_only=False) runs it: the test's payload is real
    torch.load(tmp_path / "pqa" / "pqa_state.pt", weights_only=False)
    assert victim.exists()
