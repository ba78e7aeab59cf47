"""Tiny randomly initialised encoders built from a config — for fast tests, never for results."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from korag import atomic

DEFAULT_TEXTS = [
    "대한민국의 수도는 서울이다",
    "세종대왕은 훈민정음을 창제하였다",
    "한강은 서울을 가로지른다",
    "부산은 항구 도시이다",
    "query: passage: 질문 문서 검색",
    "Python 프로그래밍 언어",
]


def build_tiny_encoder(
    path: str | Path,
    *,
    texts: Iterable[str] = (),
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int = 400,
    max_length: int = 128,
    prompts: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a sentence-transformers directory: a WordPiece tokenizer trained on `texts` and a
    BERT of `layers` × `hidden`, mean pooling, normalisation, E5-style prompts by default."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    corpus = list(texts) + DEFAULT_TEXTS
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus * 3, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    # the trainer numbers its tokens in hash-map order, which changes from run to run; ids in a
    # fixed order (specials first, then sorted) make the same texts build the same model
    learned = sorted(set(tok.get_vocab()) - set(specials))
    tok.model = models.WordPiece({t: i for i, t in enumerate([*specials, *learned])}, unk_token="[UNK]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=max_length,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    bert = BertModel(config)
    with atomic.atomic_directory(path, overwrite=True) as tmp:
        hf = tmp / "_hf"
        bert.save_pretrained(hf)
        fast.save_pretrained(hf)
        transformer = Transformer(str(hf), max_seq_length=max_length)
        model = SentenceTransformer(
            modules=[transformer, Pooling(hidden, pooling_mode="mean"), Normalize()],
            prompts=prompts if prompts is not None else {"query": "query: ", "passage": "passage: "},
            similarity_fn_name="cosine",
            device="cpu",
        )
        model.save(str(tmp))
        import shutil

        shutil.rmtree(hf)
    return Path(path)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_causal_lm(
    path: str | Path,
    *,
    texts: Iterable[str] = (),
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int = 600,
    max_length: int = 2048,
    seed: int = 0,
) -> Path:
    """Write a transformers directory: a byte-level BPE trained on `texts` (so any text round-trips)
    and a Llama of `layers` × `hidden` with a small chat template — random weights, for tests."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator((list(texts) + DEFAULT_TEXTS) * 2, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=max_length
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_length,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    with atomic.atomic_directory(path, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        fast.save_pretrained(tmp)
    return Path(path)


def pretrain_tiny_causal_lm(
    path: str | Path,
    texts: Iterable[str],
    *,
    steps: int = 300,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> Path:
    """Train every weight of the tiny LM at `path` on `texts` (next-token loss) and save it in
    place: a stand-in for a pre-trained LM that knows the language of a synthetic corpus, so that
    what a frozen LM must be told (the memory tests) is the documents' content, not their words."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    rows = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, min(batch_size, len(rows)))
        width = max(len(r) for r in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, r in enumerate(batch):
            ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(r)] = torch.tensor(r)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with atomic.atomic_directory(path, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return Path(path)
