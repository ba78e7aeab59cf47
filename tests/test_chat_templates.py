"""Instruction models: chat templates with the family's thinking switch (tiny Qwen3-like and
harmony-like models built from a config), reasoning removed and counted, JSON answers, prompt
style, and korag's own OpenAI-compatible server with chat messages."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from korag.synth.chat import (
    ThinkFilter,
    check_json,
    resolve_prompt_style,
    response_format,
    schema_from_response_format,
    split_reasoning,
    template_family,
)
from korag.synth.generation import GenerationConfig, GeneratorBase
from korag.synth.prompts import QUERY_SCHEMA, QueryPrompt

QWEN3_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)
HARMONY_TEMPLATE = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|start|>assistant<|channel|>final"
    "{% else %}<|start|>{{ m['role'] }}{% endif %}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)
HARMONY_SPECIALS = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>"]


def _build(path: Path, template: str, specials: list[str], plain: list[str], eos: str) -> Path:
    """A tiny Qwen3 (random weights) whose tokenizer has `template` and these added tokens."""
    from transformers import AddedToken, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from korag.models.tiny import build_tiny_causal_lm

    base = build_tiny_causal_lm(path.parent / f"{path.name}-base", vocab_size=300)
    tok = AutoTokenizer.from_pretrained(str(base))
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    tok.chat_template = template
    tok.eos_token = eos
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.convert_tokens_to_ids(eos),
    )
    import torch

    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    from korag.synth.llm import make_generator

    path = _build(
        tmp_path_factory.mktemp("qwen3") / "tiny-qwen3",
        QWEN3_TEMPLATE,
        ["<|im_start|>", "<|im_end|>"],
        ["<think>", "</think>"],
        "<|im_end|>",
    )
    return make_generator(str(path), batch_size=4, show_progress=False)


@pytest.fixture(scope="module")
def harmony(tmp_path_factory):
    from korag.synth.llm import make_generator

    path = _build(
        tmp_path_factory.mktemp("harmony") / "tiny-harmony", HARMONY_TEMPLATE, HARMONY_SPECIALS, [], "<|return|>"
    )
    return make_generator(str(path), batch_size=4, show_progress=False)


# -- reasoning, JSON, streaming filters (pure functions) -------------------------------------
@pytest.mark.parametrize(
    ("raw", "answer", "reasoning", "unterminated"),
    [
        ("그냥 답", "그냥 답", "", False),
        ("<think>음… 서울이다</think>\n\n서울", "서울", "음… 서울이다", False),
        ("프롬프트가 연 블록</think>\n답", "답", "프롬프트가 연 블록", False),  # Qwen3-Thinking-2507
        ("<think>끝나지 않은 생각", "", "끝나지 않은 생각", True),  # hit max_tokens while thinking
        (
            "<|channel|>analysis<|message|>User asks.<|end|><|start|>assistant<|channel|>final<|message|>답<|return|>",
            "답",
            "User asks.",
            False,
        ),
        ("<|channel|>analysis<|message|>still thinking", "", "still thinking", True),
        ("analysisUser asks.assistantfinal답", "답", "User asks.", False),  # harmony, specials skipped
    ],
)
def test_reasoning_is_split_off(raw, answer, reasoning, unterminated):
    got = split_reasoning(raw)
    assert (got.answer, got.reasoning, got.unterminated) == (answer, reasoning, unterminated)


def test_think_filter_holds_back_blocks_split_across_pieces():
    f = ThinkFilter()
    pieces = ["<th", "ink>비밀", "</thi", "nk>\n\n서", "울"]
    assert "".join(f.feed(p) for p in pieces) + f.finish() == "서울"
    assert f.reasoning == "비밀"
    plain = ThinkFilter()
    assert "".join(plain.feed(p) for p in [" 앞 공백", "도 그대로 <"]) + plain.finish() == " 앞 공백도 그대로 <"
    opened = ThinkFilter(thinking=True)  # the prompt ended with <think>
    assert opened.feed("생각") == "" and opened.finish() == "" and opened.unterminated


def test_json_answers_are_extracted_and_validated():
    text, problem = check_json('네, 여기 있습니다: ```json\n{"queries": ["한강 길이"]}\n```', QUERY_SCHEMA)
    assert problem is None and json.loads(text) == {"queries": ["한강 길이"]}
    assert check_json('{"queries": []}', QUERY_SCHEMA)[1]  # minItems
    assert check_json("질문: 한강은?", QUERY_SCHEMA) == ("질문: 한강은?", "no JSON object in the answer")
    assert check_json("[1, 2]", {})[1] == "expected a JSON object, got list"
    assert schema_from_response_format(response_format(QUERY_SCHEMA)) == QUERY_SCHEMA
    assert schema_from_response_format({"type": "json_object"}) == {}
    assert schema_from_response_format({"type": "text"}) is None
    with pytest.raises(ValueError, match="unknown response_format type 'xml'"):
        schema_from_response_format({"type": "xml"})


# -- chat templates of tiny models -----------------------------------------------------------
def test_qwen3_template_gets_enable_thinking(qwen3):
    msgs = [{"role": "user", "content": "한강은?"}]
    assert qwen3.has_chat_template and qwen3.family == "thinking"
    off = qwen3.render(msgs, GenerationConfig(thinking=False))
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<think>" not in qwen3.render(msgs, GenerationConfig(thinking=True))
    assert "<think>" not in qwen3.render(msgs)  # unset: the template's default (thinking)
    assert resolve_prompt_style(qwen3, "auto") == "chat"
    assert resolve_prompt_style(qwen3, "completion") == "completion"
    # the real generation path with the template: deterministic, reasoning-free strings
    prompts = [msgs, [{"role": "system", "content": "짧게"}, {"role": "user", "content": "부산은?"}]]
    cfg = GenerationConfig(max_tokens=5, thinking=False)
    first = qwen3.generate(prompts, cfg)
    assert first == qwen3.generate(prompts, cfg) and all(isinstance(t, str) for t in first)


def test_harmony_template_gets_reasoning_effort(harmony):
    msgs = [{"role": "user", "content": "질문"}]
    assert harmony.family == "harmony" and template_family(QWEN3_TEMPLATE) == "thinking"
    assert "Reasoning: high" in harmony.render(msgs, GenerationConfig(reasoning_effort="high"))
    assert "Reasoning: low" in harmony.render(msgs, GenerationConfig(thinking=False))  # cannot switch it off
    assert "Reasoning: medium" in harmony.render(msgs)


def _script(generator, monkeypatch, outputs: list[str]) -> None:
    """Make the model 'write' `outputs` (one per prompt of the next batch), through the real
    decoding and finishing path: sequences are the prompt ids plus the scripted ids."""
    import torch

    tok = generator.tokenizer

    def fake_generate(input_ids, attention_mask=None, **kwargs):
        rows = [tok(o, add_special_tokens=False)["input_ids"] for o in outputs[: len(input_ids)]]
        width = max(len(r) for r in rows)
        new = torch.full((len(rows), width), tok.pad_token_id)
        for i, r in enumerate(rows):
            new[i, : len(r)] = torch.tensor(r)
        vocab = generator.model.config.vocab_size
        logits = tuple(torch.zeros(len(rows), vocab) for _ in range(width))

        class Out:
            sequences = torch.cat([input_ids, new], dim=1)

        Out.logits = logits
        return Out

    monkeypatch.setattr(generator.model, "generate", fake_generate)


def test_reasoning_is_removed_and_counted_in_generation(qwen3, harmony, monkeypatch):
    before = qwen3.stats.reasoning_outputs, qwen3.stats.reasoning_unterminated
    _script(qwen3, monkeypatch, ["<think>생각 중</think>\n\n서울", "<think>끝없는 생각", "바로 답"])
    msgs = [[{"role": "user", "content": str(i)}] for i in range(3)]
    got = qwen3.generate(msgs, GenerationConfig(max_tokens=8))
    assert got == ["서울", "", "바로 답"]
    assert qwen3.stats.reasoning_outputs - before[0] == 2
    assert qwen3.stats.reasoning_unterminated - before[1] == 1
    # harmony's channel markers are special tokens: kept for the split, dropped from the answer
    assert harmony._reasoning_special
    final = "<|channel|>analysis<|message|>생각<|end|><|start|>assistant<|channel|>final<|message|>답이다<|return|>"
    _script(harmony, monkeypatch, [final])
    assert harmony.generate([[{"role": "user", "content": "q"}]], GenerationConfig(max_tokens=8)) == ["답이다"]
    assert harmony.stats.reasoning_chars >= 2


def test_json_answers_from_a_chat_model_are_validated_and_counted(qwen3, monkeypatch):
    before = qwen3.stats.json_invalid
    _script(qwen3, monkeypatch, ['<think>음</think>```json\n{"queries": ["남산 높이"]}\n```', "JSON 아님"])
    cfg = GenerationConfig(max_tokens=8, json_schema=QUERY_SCHEMA)
    got = qwen3.generate([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], cfg)
    assert json.loads(got[0]) == {"queries": ["남산 높이"]}
    assert got[1] == "JSON 아님" and qwen3.stats.json_invalid - before == 1


def test_query_generation_with_chat_prompts_parses_json(sample_corpus, monkeypatch):
    from korag.synth.queries import generate_llm_queries

    seen = []

    class Scripted(GeneratorBase):
        def generate(self, prompts, config):
            seen.append(config)
            assert all(isinstance(p, list) and p[0]["role"] == "system" for p in prompts)
            return [self.finish('{"queries": ["질문 하나", "질문 둘"]}', config) for _ in prompts]

        def describe(self):
            return {"backend": "scripted"}

    prompt = QueryPrompt("question", chat=True)
    got, counts = generate_llm_queries(
        sample_corpus, Scripted(), prompt, GenerationConfig(max_tokens=40), show_progress=False
    )
    assert seen[0].json_schema == QUERY_SCHEMA and seen[0].stop == ()
    assert counts["parsed"] == 2 * len(sample_corpus) and got.queries[0].text == "질문 하나"
    assert prompt.to_dict()["chat"] is True and prompt.template_hash() != QueryPrompt("question").template_hash()


@pytest.fixture(scope="module")
def sample_corpus():
    from korag.data.sample import load_sample

    qa = load_sample()
    return qa.corpus.subset(range(4))


# -- korag's own OpenAI-compatible server ------------------------------------------------------
class _Recorder(GeneratorBase):
    """A server-side model that records what it was asked and answers with reasoning + JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def generate(self, prompts, config):
        self.calls.append((prompts, config))
        return ['<think>먼저 생각</think>{"queries": ["서울 인구"]}' for _ in prompts]

    def describe(self):
        return {"backend": "recorder"}


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_takes_chat_settings_and_client_strips_reasoning():
    from korag.synth.llm import OpenAIHTTPGenerator
    from korag.synth.serve import serve_in_thread

    model = _Recorder()
    server, _ = serve_in_thread(model, port=0, model_name="rec")
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        client = OpenAIHTTPGenerator(base, "rec", thinking=False, reasoning_effort="low", timeout=10)
        cfg = GenerationConfig(max_tokens=20, json_schema=QUERY_SCHEMA)
        msgs = [{"role": "user", "content": "서울?"}]
        assert client.generate([msgs], cfg) == ['{"queries": ["서울 인구"]}']
        assert client.stats.reasoning_outputs == 1 and client.stats.json_invalid == 0
        prompts, seen = model.calls[-1]
        assert prompts == [msgs]
        assert seen.thinking is False and seen.reasoning_effort == "low" and dict(seen.json_schema) == QUERY_SCHEMA
        # what OpenAI clients send: content parts, the developer role
        code, body = _post(
            base + "/v1/chat/completions",
            {
                "messages": [
                    {"role": "developer", "content": "짧게"},
                    {"role": "user", "content": [{"type": "text", "text": "안"}, {"type": "text", "text": "녕"}]},
                ],
                "response_format": {"type": "json_object"},
            },
        )
        assert code == 200 and body["object"] == "chat.completion"
        assert model.calls[-1][0] == [[{"role": "system", "content": "짧게"}, {"role": "user", "content": "안녕"}]]
        assert model.calls[-1][1].json_schema == {}
        for bad, message in [
            ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "'n' must be 1"),
            ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}, "xml"),
            ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text content"),
        ]:
            code, body = _post(base + "/v1/chat/completions", bad)
            assert code == 400 and message in body["error"]["message"]
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            assert json.loads(r.read())["requests"] == 2
    finally:
        server.shutdown()
        server.server_close()


def test_server_with_a_chat_model_streams_and_matches_local_generation(qwen3):
    from korag.synth.llm import OpenAIHTTPGenerator
    from korag.synth.serve import serve_in_thread

    server, _ = serve_in_thread(qwen3, port=0, model_name="qwen3")
    try:
        client = OpenAIHTTPGenerator(f"http://127.0.0.1:{server.server_address[1]}", "qwen3", timeout=30)
        msgs = [[{"role": "user", "content": "한강은 어디에?"}], [{"role": "user", "content": "부산"}]]
        for thinking in (False, True):
            cfg = GenerationConfig(max_tokens=6, thinking=thinking)
            assert client.generate(msgs, cfg) == qwen3.generate(msgs, cfg)
        cfg = GenerationConfig(max_tokens=6, thinking=False)
        pieces = list(client.stream(msgs[0], cfg))
        assert "".join(pieces) == qwen3.generate([msgs[0]], cfg)[0]
    finally:
        server.shutdown()
        server.server_close()
