"""What a stage produces: a kind of artifact with a fixed layout, and typed ways to open it.

A stage declares the `Kind` it produces; the runner records it in the manifest and checks after
the stage ran that the kind's files are there. Consumers never spell a producer's file names:
they open an input through the accessor of its kind (``ctx.input("data").dataset()``), which
refuses an artifact of another kind with an error naming both. The layout constants below are
the one place a file name of the store is written down.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from korag.errors import ConfigError

if TYPE_CHECKING:
    from korag.data.schema import Corpus, QASet, Ranking, RetrievalSet
    from korag.data.synthetic import SyntheticSet


class Kind(StrEnum):
    """The kinds of stage output."""

    DATASET = "dataset"  # a loaded data source in korag's saved layout
    STATS = "stats"  # corpus statistics
    TERM_COUNTS = "term-counts"  # a tokenised corpus' term counts
    INDEX = "index"  # a saved retriever
    RANKING = "ranking"  # each query's top-k
    EVALUATION = "evaluation"  # IR metrics (and, per query, in per_query.json)
    SPLIT = "split"  # a QA set split into train and test questions
    SYNTHETIC = "synthetic"  # synthetic queries
    FILTERED = "filtered"  # synthetic queries after filtering, with the filter report
    MODEL = "model"  # a trained or converted model directory
    COMPARISON = "comparison"  # systems side by side (typed rows)
    WRITE_QUALITY = "write-quality"  # write-phase quality of parametric memories
    REPORT = "report"  # Markdown, plots and JSON for people
    OTHER = "other"  # a layout of the stage's own, opened by path (stages outside korag's flows)


DATASET_DIR = "dataset"
COUNTS_DIR = "counts"
INDEX_DIR = "index"
RANKING_FILE = "ranking.npz"
TREC_RUN_FILE = "run.trec"
METRICS_FILE = "metrics.json"
PER_QUERY_FILE = "per_query.json"
STATS_JSON, STATS_MD, STATS_TXT = "stats.json", "stats.md", "stats.txt"
SPLIT_TRAIN, SPLIT_TEST, SPLIT_FIRST_DOCS = "train", "test", "first_docs.json"
SYNTHETIC_FILE = "synthetic.jsonl"
FILTER_REPORT_FILE = "filter_report.json"
MODEL_DIR = "model"
MODEL_POINTER = "pointer.json"  # a model used where it lies: {"path": …}
TRAINING_FILE = "training.json"
COMPARISON_FILE = "comparison.json"
WRITE_QUALITY_FILE = "write_quality.json"
REPORT_MD = "report.md"

# The files each kind must contain (checked when a stage finishes); a tuple names alternatives.
FILES: dict[Kind, tuple[str | tuple[str, ...], ...]] = {
    Kind.DATASET: (DATASET_DIR,),
    Kind.STATS: (STATS_JSON, STATS_MD),
    Kind.TERM_COUNTS: (COUNTS_DIR,),
    Kind.INDEX: (INDEX_DIR,),
    Kind.RANKING: (RANKING_FILE,),
    Kind.EVALUATION: (METRICS_FILE,),
    Kind.SPLIT: (SPLIT_TRAIN, SPLIT_TEST, SPLIT_FIRST_DOCS),
    Kind.SYNTHETIC: (SYNTHETIC_FILE,),
    Kind.FILTERED: (SYNTHETIC_FILE, FILTER_REPORT_FILE),
    Kind.MODEL: ((MODEL_DIR, MODEL_POINTER),),
    Kind.COMPARISON: (COMPARISON_FILE,),
    Kind.WRITE_QUALITY: (WRITE_QUALITY_FILE,),
    Kind.REPORT: (REPORT_MD,),
    Kind.OTHER: (),
}


def missing_files(kind: Kind, directory: Path) -> list[str]:
    """The files `kind` requires that `directory` lacks."""
    missing = []
    for entry in FILES[kind]:
        options = (entry,) if isinstance(entry, str) else entry
        if not any((directory / f).exists() for f in options):
            missing.append(" or ".join(options))
    return missing


class TypedOutputs:
    """The typed accessors of an artifact; mixed into `korag.pipeline.store.Artifact`."""

    stage: str
    key: str
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> Kind | None:
        """The kind recorded in the manifest (None for artifacts written before kinds existed)."""
        value = self.manifest.get("kind")
        return Kind(value) if value in Kind._value2member_map_ else None

    def _expect(self, *kinds: Kind) -> None:
        if self.kind is not None and self.kind not in kinds:
            wanted = " or ".join(k.value for k in kinds)
            raise ConfigError(f"artifact {self.stage}/{self.key} is a {self.kind.value}, not a {wanted}")

    def dataset(self) -> RetrievalSet | QASet | Corpus:
        """The loaded data."""
        from korag.data.saved import open_dataset

        self._expect(Kind.DATASET)
        return open_dataset(self.path / DATASET_DIR)

    def split(self) -> tuple[RetrievalSet, RetrievalSet, list[str]]:
        """(training questions, test questions, ids of the first part's documents)."""
        from korag.data.saved import open_dataset

        self._expect(Kind.SPLIT)
        first_docs = json.loads((self.path / SPLIT_FIRST_DOCS).read_text(encoding="utf-8"))
        return open_dataset(self.path / SPLIT_TRAIN), open_dataset(self.path / SPLIT_TEST), first_docs  # type: ignore[return-value]

    def term_counts(self):
        """The term counts of a tokenised corpus (`korag.retrieval.term_counts.TermCounts`)."""
        from korag.retrieval.term_counts import TermCounts

        self._expect(Kind.TERM_COUNTS)
        return TermCounts.load(self.path / COUNTS_DIR)

    @property
    def index_dir(self) -> Path:
        """The saved retriever's directory."""
        self._expect(Kind.INDEX)
        return self.path / INDEX_DIR

    def retriever(self, *, mmap: bool = True):
        """The saved retriever, opened."""
        from korag.retrieval.base import load_retriever

        return load_retriever(self.index_dir, mmap=mmap)

    def ranking(self) -> Ranking:
        """Each query's top-k."""
        from korag.data.runs import load_ranking

        self._expect(Kind.RANKING, Kind.EVALUATION)
        return load_ranking(self.path / RANKING_FILE)

    def synthetic(self, corpus: Corpus) -> SyntheticSet:
        """Synthetic queries over `corpus` (generated or filtered)."""
        from korag.data.synthetic import SyntheticSet

        self._expect(Kind.SYNTHETIC, Kind.FILTERED)
        return SyntheticSet.read_jsonl(self.path / SYNTHETIC_FILE, corpus)

    @property
    def model_dir(self) -> Path:
        """The directory of the model: inside the artifact, or where a pointer says it lies."""
        self._expect(Kind.MODEL)
        pointer = self.path / MODEL_POINTER
        if pointer.is_file():
            return Path(json.loads(pointer.read_text(encoding="utf-8"))["path"])
        return self.path / MODEL_DIR

    def read_json(self, name: str) -> Any:
        """A JSON file of this artifact, by its layout constant (e.g. `COMPARISON_FILE`)."""
        return json.loads((self.path / name).read_text(encoding="utf-8"))


def open_index_dir(path: str | Path) -> Path:
    """A saved retriever's directory from what a user names: the directory itself or an index
    artifact of the store (its ``manifest.json`` says so)."""
    p = Path(path)
    manifest = p / "manifest.json"
    if manifest.is_file():
        kind = json.loads(manifest.read_text(encoding="utf-8")).get("kind")
        if kind == Kind.INDEX or (kind is None and (p / INDEX_DIR / "retriever.json").is_file()):
            return p / INDEX_DIR
        raise ConfigError(f"{p}: a {kind} artifact, not an index")
    return p
