"""The out-of-domain Korean retrieval set: hand-written questions over konlpy's kobill bills."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from korag.data.domain import BILLS, domain_overlap, domain_rows, kobill_corpus, kobill_dir, load_domain
from korag.errors import DataError


@pytest.fixture(scope="module")
def kobill() -> Path:
    """The installed konlpy's kobill folder (tests skip without konlpy, a dev extra)."""
    try:
        folder = kobill_dir()
    except DataError:
        pytest.skip("konlpy is not installed (pip install -e '.[dev]')")
    if not folder.is_dir():
        pytest.skip(f"no kobill corpus at {folder}")
    return folder


@pytest.fixture
def kobill_copy(kobill, tmp_path) -> Path:
    """A writable copy of the kobill folder."""
    copy = tmp_path / "kobill"
    shutil.copytree(kobill, copy)
    return copy


def test_set_loads_with_unique_ids_and_both_styles(kobill):
    rs = load_domain()
    rows = domain_rows()
    assert len(rows) >= 120 and len(rs.queries) == len(rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["question"] for r in rows}) == len(rows)
    assert len(set(rs.corpus.ids)) == len(rs.corpus) >= 80
    styles = [r["style"] for r in rows]
    assert set(styles) == {"lexical", "paraphrase"}
    assert abs(styles.count("lexical") - styles.count("paraphrase")) <= len(rows) // 10
    # every question is judged, and only against passages of the corpus
    rs.validate()
    assert all(set(rs.qrels[r["id"]]) == {r["doc_id"], *r.get("also_relevant", [])} for r in rows)


def test_every_answer_is_a_span_of_its_passage(kobill):
    corpus = kobill_corpus()
    for r in domain_rows():
        assert r["answer"] and r["answer"] in corpus.get(r["doc_id"]).text, r["id"]
        assert all(other in corpus and other != r["doc_id"] for other in r.get("also_relevant", [])), r["id"]


def test_passages_are_cut_deterministically_without_comparison_tables(kobill, kobill_copy):
    first, second = kobill_corpus(), kobill_corpus(kobill_copy)
    assert first.ids == second.ids and first.texts == second.texts
    assert all(len(t) <= 300 or "\n" not in t for t in first.texts)
    assert not any("구조문대비표" in t for t in first.texts)
    # the joint cost statement of the four parental-leave bills is kept once
    assert sum("연평균 10억원 미만" in t for t in first.texts) == 1


def test_a_tampered_passage_is_refused_in_one_line(kobill_copy):
    bill = kobill_copy / "1809894.txt"
    text = bill.read_text(encoding="utf-8")
    assert "87.2%" in text
    bill.write_text(text.replace("87.2%", "78.2%"), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_domain(kobill_copy)
    message = str(err.value)
    assert "\n" not in message
    assert str(bill) in message and "field 'context_sha1'" in message and "'1809894-00'" in message
    record = next(r["id"] for r in domain_rows() if r["doc_id"] == "1809894-00")
    assert err.value.record == record


def test_a_missing_bill_is_refused(kobill_copy):
    (kobill_copy / BILLS[-1]).unlink()
    with pytest.raises(DataError, match="is missing: not konlpy's kobill corpus"):
        load_domain(kobill_copy)


def test_lexical_questions_overlap_their_passage_more_than_paraphrases(kobill):
    stats = domain_overlap()
    assert stats["all"]["questions"] == len(domain_rows())
    assert stats["lexical"]["overlap"] > 0.7 > 0.45 > stats["paraphrase"]["overlap"]


def test_cli_writes_the_set_as_a_beir_directory(kobill, tmp_path):
    out = tmp_path / "kobill-beir"
    result = run_cli("data", "domain", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "bill passages" in result.stdout
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    qrels = (out / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    assert len(queries) == len(domain_rows()) and len(corpus) == len(kobill_corpus())
    assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) - 1 >= len(queries)
    assert (out / "answers.jsonl").is_file()
    again = run_cli("data", "domain", "-o", str(out))
    assert again.returncode != 0 and "--overwrite" in again.stderr + again.stdout
