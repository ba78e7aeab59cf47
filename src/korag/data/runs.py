"""Saving and loading rankings: TREC run files (for other tools) and compact ``.npz`` arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from korag import atomic
from korag.data.schema import Ranking
from korag.errors import DataError
from korag.util.reading import decode_utf8


def write_trec_run(ranking: Ranking, path: str | Path, run_name: str = "korag") -> None:
    """``qid Q0 docid rank score run_name`` lines, atomically."""
    lines = []
    for qid, results in ranking.items():
        for rank, (did, score) in enumerate(results, start=1):
            lines.append(f"{qid} Q0 {did} {rank} {score:.6f} {run_name}")
    atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_trec_run(path: str | Path) -> Ranking:
    """A ranking from a TREC run file (6 whitespace-separated columns)."""
    src = Path(path)
    results: dict[str, list[tuple[str, float]]] = {}
    for lineno, line in enumerate(decode_utf8(src.read_bytes(), src).splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6:
            raise DataError(
                src, f"expected 6 columns (qid Q0 docid rank score name), got {len(cols)}", record=f"line {lineno}"
            )
        try:
            score = float(cols[4])
        except ValueError:
            raise DataError(src, f"score {cols[4]!r} is not a number", record=f"line {lineno}", field="score") from None
        results.setdefault(cols[0], []).append((cols[2], score))
    return Ranking.from_dict(results)


def save_ranking(ranking: Ranking, path: str | Path) -> None:
    """Arrays and ids in one ``.npz`` file, atomically."""
    with atomic.atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(
            fh,
            query_ids=np.array(ranking.query_ids, dtype=object).astype(str),
            doc_ids=np.array(list(ranking.doc_ids), dtype=object).astype(str),
            indices=ranking.indices,
            scores=ranking.scores,
        )


def load_ranking(path: str | Path) -> Ranking:
    """A ranking saved by `save_ranking`."""
    with np.load(path, allow_pickle=False) as z:
        return Ranking(z["query_ids"].tolist(), z["indices"], z["scores"], z["doc_ids"].tolist())
