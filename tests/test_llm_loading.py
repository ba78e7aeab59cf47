"""Loading LLMs on limited hardware: quantisation, device_map with a memory budget, batches sized
by free memory and halved on running out, the memory monitor. GPU-only paths are checked down to
the arguments handed to transformers' from_pretrained (captured by a monkeypatch)."""

from __future__ import annotations

import logging

import pytest

from korag.errors import ConfigError, ModelError
from korag.synth.generation import GenerationConfig

GREEDY = GenerationConfig(max_tokens=4)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from korag.models.tiny import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", vocab_size=300)


@pytest.fixture
def gpu_machine(monkeypatch):
    """Pretend to be a machine with one CUDA GPU and bitsandbytes installed."""
    import korag.synth.quantization as q

    monkeypatch.setattr(q, "cuda_available", lambda: True)
    monkeypatch.setattr(q, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(q, "has_module", lambda name: True)


@pytest.fixture
def captured(monkeypatch):
    """from_pretrained's keyword arguments; the model is then loaded plainly on the CPU."""
    from transformers import AutoModelForCausalLM

    seen: list[dict] = []
    original = AutoModelForCausalLM.from_pretrained

    def capture(path, **kwargs):
        seen.append(kwargs)
        plain = {k: v for k, v in kwargs.items() if k not in ("quantization_config", "device_map", "max_memory")}
        return original(path, **plain)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", capture)
    return seen


def test_max_memory_budgets_are_parsed_or_refused_in_one_line():
    from korag.synth.quantization import parse_max_memory

    assert parse_max_memory("0=20GiB, cpu=60GiB") == {0: "20GiB", "cpu": "60GiB"}
    assert parse_max_memory("cpu=512MB") == {"cpu": "512MB"}
    for bad, message in [
        ("0:20GiB", "expected DEVICE=SIZE"),
        ("gpu0=20GiB", "device 'gpu0' is not a GPU number"),
        ("cpu=lots", "size 'lots' is not like 20GiB"),
        (",", "no device given"),
    ]:
        with pytest.raises(ConfigError, match=message) as info:
            parse_max_memory(bad)
        assert "\n" not in str(info.value)


def test_4bit_plan_on_a_gpu_machine(gpu_machine, tiny_lm):
    import torch
    from transformers import BitsAndBytesConfig

    from korag.synth.quantization import loading_plan

    plan = loading_plan(tiny_lm, device="cuda", dtype="bfloat16", quantization="4bit")
    q = plan.kwargs["quantization_config"]
    assert isinstance(q, BitsAndBytesConfig) and q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert plan.kwargs["device_map"] == {"": 0} and plan.place_on is None
    # offloading to the CPU under a budget: device_map auto, fp32 offload allowed for bitsandbytes
    plan = loading_plan(tiny_lm, device="cuda", dtype="float16", quantization="8bit", max_memory="0=20GiB,cpu=60GiB")
    q = plan.kwargs["quantization_config"]
    assert q.load_in_8bit and q.llm_int8_enable_fp32_cpu_offload
    assert plan.kwargs["device_map"] == "auto" and plan.kwargs["max_memory"] == {0: "20GiB", "cpu": "60GiB"}
    with pytest.raises(ConfigError, match="names GPU 3 but only 1 CUDA device"):
        loading_plan(tiny_lm, device="cuda", max_memory="3=10GiB")


def test_unavailable_choices_are_one_line_config_errors(tiny_lm, monkeypatch):
    import korag.synth.quantization as q
    from korag.synth.quantization import loading_plan

    monkeypatch.setattr(q, "cuda_available", lambda: False)
    monkeypatch.setattr(q, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(q, "has_module", lambda name: name == "accelerate")
    cases = [
        ({"quantization": "4bit"}, "quantization 4bit needs bitsandbytes and a CUDA GPU"),
        ({"quantization": "awq"}, "needs a pre-quantised AWQ checkpoint"),
        ({"quantization": "int3"}, "quantization must be one of"),
        ({"max_memory": "0=8GiB,cpu=8GiB"}, "names GPU 0 but there is no CUDA device"),
        ({"device_map": "balanced"}, "device_map must be auto"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            loading_plan(tiny_lm, device="cpu", **kwargs)
        assert "\n" not in str(info.value)


def test_generator_hands_the_plan_to_from_pretrained(gpu_machine, captured, tiny_lm):
    from transformers import BitsAndBytesConfig

    from korag.synth.llm import TransformersGenerator

    gen = TransformersGenerator(tiny_lm, device="cpu", quantization="4bit", dtype="float32", show_progress=False)
    kwargs = captured[-1]
    assert isinstance(kwargs["quantization_config"], BitsAndBytesConfig) and kwargs["quantization_config"].load_in_4bit
    assert kwargs["device_map"] == {"": "cpu"}
    assert gen.describe()["loading"]["quantization"] == "4bit"
    assert len(gen.generate(["세종대왕은"], GREEDY)) == 1


def test_device_map_auto_with_a_cpu_budget_runs_on_the_cpu(tiny_lm, caplog):
    from korag.synth.llm import TransformersGenerator

    plain = TransformersGenerator(tiny_lm, show_progress=False)
    with caplog.at_level(logging.INFO, logger="korag.synth.memory_monitor"):
        mapped = TransformersGenerator(tiny_lm, device="auto", max_memory="cpu=2GiB", show_progress=False)
    assert mapped.loading["device_map"] == "auto" and mapped.describe()["loading"]["max_memory"] == "cpu=2GiB"
    prompts = ["세종대왕은", "한강은 서울을"]
    assert mapped.generate(prompts, GREEDY) == plain.generate(prompts, GREEDY)
    assert mapped.stats.extra["memory"]["load"]["cpu_rss_mib"] > 0
    assert "generate" in mapped.stats.extra["memory"]
    assert any("memory load: peak CPU RSS" in r.getMessage() for r in caplog.records)


def test_batches_sized_by_free_memory(tiny_lm, monkeypatch):
    from transformers import AutoConfig

    import korag.synth.llm as llm
    from korag.synth.llm import TransformersGenerator, batch_size_for_memory

    gemma = AutoConfig.for_model(
        "gemma3_text",
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        hidden_size=640,
        vocab_size=262144,
    )
    small = batch_size_for_memory(gemma, prompt_tokens=600, new_tokens=32, free_bytes=2 * 2**30)
    large = batch_size_for_memory(gemma, prompt_tokens=600, new_tokens=32, free_bytes=40 * 2**30)
    assert 1 <= small < large <= 64
    assert batch_size_for_memory(gemma, prompt_tokens=600, new_tokens=32, free_bytes=1) == 1

    gen = TransformersGenerator(tiny_lm, batch_size=None, show_progress=False)
    sizes = []
    original = gen._generate_batch
    monkeypatch.setattr(
        gen, "_generate_batch", lambda texts, cfg, b: sizes.append(len(texts)) or original(texts, cfg, b)
    )
    monkeypatch.setattr(llm, "available_bytes", lambda device: 10**12)
    gen.generate(["a", "bb", "ccc"], GREEDY)
    assert sizes == [3]
    sizes.clear()
    monkeypatch.setattr(llm, "available_bytes", lambda device: 1)  # nothing free: one at a time
    gen.generate(["a", "bb", "ccc"], GREEDY)
    assert sizes == [1, 1, 1]


def test_out_of_memory_halves_the_batch(tiny_lm, monkeypatch):
    import torch

    from korag.synth.llm import TransformersGenerator

    gen = TransformersGenerator(tiny_lm, batch_size=8, show_progress=False)
    prompts = ["세종대왕은", "한강은", "부산은 항구", "광합성", "장영실", "남산"]
    expected = gen.generate(prompts, GREEDY)
    real = gen.model.generate
    calls = []

    def tight(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(**kwargs)

    monkeypatch.setattr(gen.model, "generate", tight)
    assert gen.generate(prompts, GREEDY) == expected
    assert calls[0] == 6 and max(calls[1:]) <= 3 and gen._oom_cap <= 2

    def none_fits(**kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gen.model, "generate", none_fits)
    with pytest.raises(ModelError, match="out of GPU memory generating 4 tokens for one prompt"):
        gen.generate(["하나"], GREEDY)


def test_memory_monitor_sees_an_allocation():
    import numpy as np

    from korag.synth.memory_monitor import MemoryMonitor

    monitor = MemoryMonitor(interval=0.01)
    with monitor.stage("idle"):
        pass
    with monitor.stage("alloc"):
        block = np.ones(120 * 2**20 // 8)  # 120 MiB, touched
        block.sum()
        del block
    assert monitor.peaks["alloc"]["cpu_rss_mib"] >= monitor.peaks["idle"]["cpu_rss_mib"] + 80
    assert "gpu_mib" not in monitor.peaks["alloc"]  # no CUDA here, and none is assumed


def test_cli_refuses_4bit_without_bitsandbytes_in_one_line(tiny_lm, monkeypatch):
    import korag.synth.quantization as q
    from conftest import run_cli

    if q.has_module("bitsandbytes") and q.cuda_available():
        pytest.skip("this machine can load 4-bit models")
    monkeypatch.setattr(q, "has_module", lambda name: name != "bitsandbytes")
    res = run_cli("llm", "generate", "안녕", "--model", str(tiny_lm), "--quantization", "4bit")
    assert res.returncode == 2
    assert "quantization 4bit needs bitsandbytes" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    shown = run_cli("llm", "generate", "x", "--quantization", "8bit", "--max-memory", "cpu=4GiB", "--show-config")
    assert shown.returncode == 0 and "quantization: 8bit" in shown.stdout and "max_memory: cpu=4GiB" in shown.stdout
