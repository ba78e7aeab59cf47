"""The two training phases of parametric QA, on the memory models' shared loop (resumable,
TensorBoard, device chosen at run time).

| phase | learns | loss |
|---|---|---|
| write | the batch's z rows (SparseAdam: only they move), the projection | NLL of each document from its z |
| read | the selector; optionally LM (LoRA), z, projection, each at its own rate | L_qa + α·L_retrieval |

Read-phase records are a QA set's questions whose documents are in the written pool. With
``train_with='selected'`` the LM reads the selector's top-k through a straight-through top-k
(hard in the forward pass, soft gradient to the scores, shared with CLaRa), so L_qa trains the
selector too; with ``'gold'`` it reads the gold documents and the selector learns from
L_retrieval alone. Multi-hop records (``hops='iterative'``, two or more documents in hop order)
add the second hop's retrieval term, with the query extended by the bridge (the title of the
second document, HotpotQA's bridge entity), and an intermediate-answer term from the first hop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from korag import atomic
from korag.data.schema import Corpus, QAExample
from korag.errors import ConfigError
from korag.memory.clara.topk import differentiable_topk
from korag.memory.loop import run_loop
from korag.memory.pqa.config import ReadConfig, WriteConfig
from korag.memory.pqa.fast_write import FastWriteInit, document_features
from korag.memory.pqa.model import READER, ParametricQA
from korag.memory.pqa.query import QueryEmbeddings, bridge_query, load_query_encoder
from korag.memory.pqa.selectors import Selector, exclude, make_selector, retrieval_loss
from korag.memory.pqa.store import build_pqa, load_model_state, load_pqa, model_state, save_pqa
from korag.models.device import is_main_process, resolve_device
from korag.models.lora import lora_parameters


def _train_or_freeze(groups: list[dict[str, Any]], params: list[torch.nn.Parameter], lr: float) -> None:
    """Add `params` as an optimiser group at `lr`, or freeze them when `lr` is 0."""
    if lr > 0:
        groups.append({"params": params, "lr": lr})
    else:
        for p in params:
            p.requires_grad_(False)


def _run_record(loop, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": loop.steps,
        "seconds": loop.seconds,
        "first_loss": loop.first_loss,
        "last_loss": loop.last_loss,
        "history": loop.history,
        "processes": loop.processes,
        **extra,
    }


def write_documents(
    corpus: Corpus, config: WriteConfig, output: str | Path, *, resume: bool = True, show_progress: bool = True
) -> dict[str, Any]:
    """Write every document of `corpus` (its first `config.max_docs`) into its own memory; saves
    ``model/`` (a PQA directory), ``training.json`` and ``tensorboard/`` under `output`. Returns
    the run record."""
    out = Path(output)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if config.max_docs is not None:
        corpus = corpus.subset(range(min(config.max_docs, len(corpus))))
    docs = corpus.contents(config.with_title)
    vectors = None
    if config.pqa.memory == "encoder":
        if not config.encoder:
            raise ConfigError("memory='encoder' (xRAG) needs an encoder")
        vectors = load_query_encoder(config.encoder).encode_documents(docs, show_progress=show_progress)
        if vectors.shape[1] != config.pqa.z_dim:
            raise ConfigError(f"memory='encoder': z_dim must be the encoder's width ({vectors.shape[1]})")
    model = build_pqa(config.base, config.pqa, len(docs), device=device, encoder_vectors=vectors)
    optimizers: list[torch.optim.Optimizer] = []
    if config.pqa.memory == "learned":
        optimizers.append(torch.optim.SparseAdam([model.pool], lr=config.lr_z))
    proj = list(model.projection.parameters())
    if config.lr_projection > 0:
        optimizers.append(torch.optim.AdamW(proj, lr=config.lr_projection, weight_decay=0.0))
    else:
        for p in proj:
            p.requires_grad_(False)
    if not optimizers:
        raise ConfigError("nothing to write: memory='encoder' needs lr_projection > 0")
    sparse = config.pqa.memory == "learned"

    def step(batch: list[int]):
        return model.write_loss(
            [docs[i] for i in batch], model.memory(batch, sparse=sparse), token_dropout=config.token_dropout
        )

    loop = run_loop(
        len(docs),
        step,
        optimizers,
        config,
        out,
        save_state=lambda: model_state(model, None),
        load_state=lambda s: load_model_state(model, None, s),
        config=config,
        resume=resume,
        desc="PQA write",
        show_progress=show_progress,
        clip=proj,
        device=device,
    )
    record = _run_record(
        loop, {"phase": "write", "documents": len(docs), "device": device, "with_title": config.with_title}
    )
    if not is_main_process():  # the others trained the same pool; one process writes it
        return record
    fast = None
    if config.fit_fast_init and config.pqa.memory == "learned":
        fast = FastWriteInit.fit(document_features(model, docs), model.memory())
    save_pqa(
        model,
        out / "model",
        base=config.base,
        doc_ids=corpus.ids,
        encoder=config.encoder,
        fast_init=fast,
        records={"write": {k: v for k, v in record.items() if k != "history"}},
    )
    atomic.write_json(out / "training.json", record)
    return record


def written_with_title(info: dict[str, Any]) -> bool:
    """Whether the written documents were title + text (the write phase's setting)."""
    return bool(info.get("records", {}).get("write", {}).get("with_title", True))


def read_records(examples: Sequence[QAExample], doc_ids: Sequence[str]) -> list[tuple[QAExample, tuple[int, ...]]]:
    """Examples with an answer whose documents are all in the pool, with their pool rows."""
    row = {d: i for i, d in enumerate(doc_ids)}
    out = []
    for e in examples:
        if e.answers and e.doc_ids and all(d in row for d in e.doc_ids):
            out.append((e, tuple(row[d] for d in e.doc_ids)))
    return out


class ReadStep:
    """One read-phase step: selection, straight-through reading, the two losses."""

    def __init__(
        self,
        model: ParametricQA,
        selector: Selector,
        queries: QueryEmbeddings,
        records: Sequence[tuple[QAExample, tuple[int, ...]]],
        config: ReadConfig,
        titles: Sequence[str],
        texts: Sequence[str],
    ) -> None:
        self.model, self.selector, self.queries, self.records, self.config = model, selector, queries, records, config
        self.titles = titles
        self.texts = texts

    def hop_query(self, question: str, gold: tuple[int, ...]) -> str:
        """The second hop's training query (see `ReadConfig.intermediate`)."""
        found = self.titles[gold[1]] if self.config.intermediate == "answer" else self.texts[gold[0]]
        return bridge_query(question, found)

    def _read(self, scores: torch.Tensor, gold: list[tuple[int, ...]], k: int, z: torch.Tensor) -> torch.Tensor:
        if self.config.train_with == "gold":
            return torch.stack([z[[*g[:k], *[g[0]] * (k - len(g[:k]))]] for g in gold])
        w, _ = differentiable_topk(scores, k, 1.0)
        return torch.einsum("bkn,nmd->bkmd", w.to(z.dtype), z)

    def _one_hop(self, recs, z: torch.Tensor, k: int):
        questions = [e.question for e, _ in recs]
        gold = [g for _, g in recs]
        scores = self.selector.scores(self.queries.get(questions), z)
        l_ret = retrieval_loss(scores, gold)
        if self.config.qa_weight > 0:
            answers = [e.answers[0] for e, _ in recs]
            l_qa = self.model.qa_loss(questions, self._read(scores, gold, k, z), answers)
        else:
            l_qa = torch.zeros((), device=scores.device)
        return l_qa, l_ret, scores, {}

    def _two_hops(self, recs, z: torch.Tensor):
        questions = [e.question for e, _ in recs]
        answers = [e.answers[0] for e, _ in recs]
        gold = [g for _, g in recs]
        scores = self.selector.scores(self.queries.get(questions), z)
        q2 = self.queries.get([self.hop_query(q, g) for q, g in zip(questions, gold, strict=True)])
        s2 = exclude(self.selector.scores(q2, z), [[g[0]] for g in gold])
        l_ret = retrieval_loss(scores, [(g[0],) for g in gold]) + retrieval_loss(s2, [(g[1],) for g in gold])
        if self.config.qa_weight == 0:
            return torch.zeros((), device=scores.device), l_ret, scores, {}
        if self.config.train_with == "gold":
            read = torch.stack([z[[g[0], g[1]]] for g in gold])
        else:
            w = torch.cat([differentiable_topk(scores, 1, 1.0)[0], differentiable_topk(s2, 1, 1.0)[0]], 1)
            read = torch.einsum("bkn,nmd->bkmd", w.to(z.dtype), z)
        l_qa = self.model.qa_loss(questions, read, answers)
        if self.config.intermediate == "document":  # the first hop's text comes from the write phase
            return l_qa, l_ret, scores, {}
        bridges = [self.titles[g[1]] for g in gold]
        l_bridge = self.model.qa_loss(questions, read[:, :1], bridges, kind="bridge")
        return l_qa + l_bridge, l_ret, scores, {"bridge": l_bridge.item()}

    def __call__(self, batch: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        recs = [self.records[i] for i in batch]
        z = self.model.memory()
        iterative = self.config.hops == "iterative"
        # iterative training mixes two-hop records with one-hop ones (which teach the selector
        # every document's key and the LM to read each memory); each group keeps its own losses
        groups = [
            ([r for r in recs if not iterative or len(r[1]) < 2], False),
            ([r for r in recs if iterative and len(r[1]) >= 2], True),
        ]
        total = torch.zeros((), device=z.device)
        parts: dict[str, float] = {"qa": 0.0, "retrieval": 0.0}
        hits: list[bool] = []
        for group, two_hops in groups:
            if not group:
                continue
            if two_hops:
                l_qa, l_ret, scores, extra = self._two_hops(group, z)
            else:
                l_qa, l_ret, scores, extra = self._one_hop(group, z, 1 if iterative else self.config.top_k)
            share = len(group) / len(recs)
            total = total + share * (self.config.qa_weight * l_qa + self.config.retrieval_weight * l_ret)
            parts["qa"] += share * l_qa.item()
            parts["retrieval"] += share * l_ret.item()
            parts.update(extra)
            hits += [t in g for t, (_, g) in zip(scores.argmax(-1).tolist(), group, strict=True)]
        parts["recall@1"] = sum(hits) / len(hits)
        return total, parts


def _warm_up_selector(step: ReadStep, selector: Selector, config: ReadConfig, out: Path, resume, show_progress):
    """L_retrieval alone, no LM pass (milliseconds a step), so the LM phase starts from a selector
    that already finds the documents."""
    warm = config.model_copy(
        update={
            "qa_weight": 0.0,
            "retrieval_weight": 1.0,
            "max_steps": config.selector_warmup_steps,
            "batch_size": max(32, config.batch_size),
            "warmup_ratio": 0.0,
        }
    )
    main_config, step.config = step.config, warm
    try:
        run_loop(
            len(step.records),
            step,
            [torch.optim.AdamW(selector.parameters(), lr=config.lr_selector_warmup, weight_decay=0.0)],
            warm,
            out,
            save_state=lambda: {k: v.detach().clone() for k, v in selector.state_dict().items()},
            load_state=selector.load_state_dict,
            config=warm,
            resume=resume,
            desc="PQA selector warm-up",
            show_progress=show_progress,
            clip=list(selector.parameters()),
            device=str(next(selector.parameters()).device),
        )
    finally:
        step.config = main_config


def train_read(
    corpus: Corpus,
    examples: Sequence[QAExample],
    config: ReadConfig,
    output: str | Path,
    *,
    resume: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train the selector (and whatever else the learning rates allow) on questions over the
    written documents; saves ``model/`` (a PQA directory with the selector) under `output`."""
    if config.init_from is None:
        raise ConfigError("the read phase needs the written model: init_from (--init-from)")
    out = Path(output)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model, selector, fast, info = load_pqa(config.init_from, device=device)
    encoder_name = config.encoder or info.get("encoder")
    if not encoder_name:
        raise ConfigError("the read phase needs a dense query encoder (--encoder)")
    records = _checked_read_records(examples, info["doc_ids"], config)
    encoder = load_query_encoder(encoder_name)
    titles = [corpus.get(d).title if d in corpus else "" for d in info["doc_ids"]]
    contents = [corpus.get(d).content(written_with_title(info)) if d in corpus else "" for d in info["doc_ids"]]
    queries = QueryEmbeddings(encoder, device=device)
    step = ReadStep(model, selector, queries, records, config, titles, contents)  # type: ignore[arg-type]
    texts = [e.question for e, _ in records]
    if config.hops == "iterative":
        texts += [step.hop_query(e.question, g) for e, g in records if len(g) >= 2]
    queries.add(texts, show_progress=show_progress)
    # a read phase may continue an earlier one (e.g. after a selector-only warm-up): same selector kind
    # and query width keep its weights, anything else starts fresh
    if selector is None or selector.config.kind != config.selector.kind or selector.query_dim != queries.dim:
        selector = make_selector(config.selector, queries.dim, model.config.z_dim).to(device)
    step.selector = selector
    if config.lora is not None and model.lora is None:
        model.add_reader_lora(config.lora)
    groups = _read_param_groups(model, selector, config)
    if config.selector_warmup_steps > 0:
        _warm_up_selector(step, selector, config, out / "selector-warmup", resume, show_progress)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    trained = [p for g in groups for p in g["params"]]
    model.lm.train()
    loop = run_loop(
        len(records),
        step,
        [optimizer],
        config,
        out,
        save_state=lambda: model_state(model, selector, fast),
        load_state=lambda s: load_model_state(model, selector, s),
        config=config,
        resume=resume,
        desc="PQA read",
        show_progress=show_progress,
        clip=trained,
        device=device,
    )
    model.lm.eval()
    record = _run_record(loop, {"phase": "read", "questions": len(records), "device": device})
    if not is_main_process():
        return record
    records_info = dict(info.get("records", {}))
    records_info["read"] = {**{k: v for k, v in record.items() if k != "history"}, "config": config.model_dump()}
    save_pqa(
        model,
        out / "model",
        base=info["base"],
        doc_ids=info["doc_ids"],
        encoder=encoder_name,
        selector=selector,
        fast_init=fast,
        records=records_info,
    )
    atomic.write_json(out / "training.json", record)
    return record


def _checked_read_records(
    examples: Sequence[QAExample], doc_ids: list[str], config: ReadConfig
) -> list[tuple[QAExample, tuple[int, ...]]]:
    """The read phase's (question, hop-ordered documents) records; refuses a set that cannot train."""
    records = read_records(examples, doc_ids)
    if not records:
        raise ConfigError(
            f"none of the {len(examples)} questions has an answer and all its documents in the written pool "
            f"({len(doc_ids)} documents of {config.init_from})"
        )
    if config.hops == "iterative" and not any(len(g) >= 2 for _, g in records):
        raise ConfigError("hops='iterative' needs questions with two or more documents in hop order")
    return records


def _read_param_groups(model: Any, selector: Any, config: ReadConfig) -> list[dict[str, Any]]:
    """Optimizer groups of the read phase: the selector always; the reader LoRA, the projection and
    the learned memory pool at their own rates, frozen where a rate is 0."""
    groups: list[dict[str, Any]] = [{"params": list(selector.parameters()), "lr": config.lr_selector}]
    if model.lora is not None:
        _train_or_freeze(groups, lora_parameters(model.lm, [READER]), config.lr_lm)
    _train_or_freeze(groups, list(model.projection.parameters()), config.lr_projection)
    _train_or_freeze(groups, [model.pool], config.lr_z if model.config.memory == "learned" else 0.0)
    return groups
