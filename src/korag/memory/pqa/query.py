"""Questions as the selectors see them: embeddings from korag's frozen dense encoder, computed
once per distinct text and kept on the model's device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from korag.models.encoder import DenseEncoder


def load_query_encoder(model: str) -> DenseEncoder:
    """The frozen dense encoder (a sentence-transformers directory, a korag training output or,
    online, a hub id) that embeds questions for the selectors."""
    return DenseEncoder(model)


def bridge_query(question: str, bridge: str) -> str:
    """The second hop's query: the question extended by what the first hop found."""
    return f"{question} {bridge}".strip()


class QueryEmbeddings:
    """A cache text → embedding row over one encoder."""

    def __init__(self, encoder: DenseEncoder, *, device: str | torch.device = "cpu") -> None:
        self.encoder = encoder
        self.device = device
        self._rows: dict[str, int] = {}
        self._vectors: list[np.ndarray] = []
        self._stacked: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self.encoder.dim

    def add(self, texts: Sequence[str], *, show_progress: bool = False) -> None:
        """Embed the texts not seen yet."""
        new = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if not new:
            return
        vecs = self.encoder.encode_queries(new, show_progress=show_progress)
        for t, v in zip(new, vecs, strict=True):
            self._rows[t] = len(self._vectors)
            self._vectors.append(v)
        self._stacked = None

    def get(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of `texts` (questions × dim), embedding any new ones first."""
        self.add(texts)
        if self._stacked is None:
            self._stacked = torch.from_numpy(np.stack(self._vectors)).float().to(self.device)
        return self._stacked[[self._rows[t] for t in texts]]
