"""Masked-LM warm-up of a sparse model's expansion head on the corpus, before sparse training.

The offline E5 (like most retrieval encoders) ships without a masked-LM head, and a freshly
initialised `SpladeHead` maps every hidden state to near-random vocabulary logits — sparse
training from there first has to learn what a token *is*. A short masked-LM run on the target
corpus teaches the head (and adapts the encoder) to predict the corpus's own pieces, which is
what SPLADE's expansion relies on. Runs on transformers' `Trainer` (progress, bf16, schedule);
the loss is computed at masked positions only, over the head's output vocabulary, so a step
costs little more than the encoder itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from korag.errors import ConfigError, DataError


@dataclass
class WarmupResult:
    """How the warm-up went."""

    steps: int
    first_loss: float
    last_loss: float
    seconds: float


class _MaskedLM:
    """Builds the torch module lazily so importing korag does not import torch."""

    @staticmethod
    def make(hf, head):
        import torch
        from torch import nn

        vocab_to_out = torch.full((head.vocab_size,), -100, dtype=torch.long)
        vocab_to_out[head.output_ids] = torch.arange(head.output_size)

        class MaskedLM(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = hf
                self.head = head
                self.register_buffer("vocab_to_out", vocab_to_out, persistent=False)

            def forward(self, input_ids, attention_mask, labels):
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                at = labels != -100
                targets = self.vocab_to_out[labels[at]]
                logits = self.head.logits(hidden[at])
                loss = nn.functional.cross_entropy(logits.float(), targets, ignore_index=-100)
                return {"loss": loss}

        return MaskedLM()


def mlm_warmup(
    model,
    texts: list[str],
    *,
    steps: int,
    output: str | Path,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    max_seq_length: int = 256,
    mask_probability: float = 0.15,
    seed: int = 42,
    bf16: bool = False,
    show_progress: bool = True,
) -> WarmupResult:
    """Train the encoder and expansion head of a sparse `model` with masked-LM for `steps` steps."""
    import time

    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from korag.models.sparse import document_modules, document_tokenizer, sparse_head, transformer_model

    head = sparse_head(model)
    if not head.expansion:
        raise ConfigError("masked-LM warm-up needs the expansion head (the token-weighting head has no vocabulary)")
    if not texts:
        raise DataError(None, "no texts to warm the masked-LM head up on")
    tokenizer = document_tokenizer(model)
    if tokenizer.mask_token_id is None:
        raise ConfigError("the tokenizer has no mask token, so masked-LM warm-up is impossible")
    hf = transformer_model(model)
    # never beyond what the transformer module itself accepts (its position embeddings)
    limit = min(max_seq_length, document_modules(model)[0].max_seq_length or max_seq_length)
    # every window of every text, not just its beginning
    enc = tokenizer(
        texts, truncation=True, max_length=limit, return_special_tokens_mask=True, return_overflowing_tokens=True
    )
    dataset = Dataset.from_dict({k: enc[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")})
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mask_probability, seed=seed)
    module = _MaskedLM.make(hf, head)
    args = TrainingArguments(
        output_dir=str(Path(output) / "mlm-warmup"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        seed=seed,
        bf16=bf16,
        use_cpu=True,
        save_strategy="no",
        logging_steps=max(1, steps // 20),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=not show_progress,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=module, args=args, train_dataset=dataset, data_collator=collator)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h and math.isfinite(h["loss"])]
    hf.train(False)
    return WarmupResult(
        steps=trainer.state.global_step,
        first_loss=float(losses[0]) if losses else float("nan"),
        last_loss=float(np.mean(losses[-3:])) if losses else float("nan"),
        seconds=seconds,
    )
