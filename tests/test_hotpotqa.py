"""HotpotQA reader: shared paragraphs, hop order, sentence offsets, format detection and errors."""

from __future__ import annotations

import json

import pytest

from korag.data.hotpotqa import read_hotpotqa
from korag.data.load import detect_format, load
from korag.errors import DataError

RECORDS = [
    {
        "_id": "q1",
        "question": "세종이 만든 문자를 쓰는 나라의 수도는?",
        "answer": "서울",
        "type": "bridge",
        "supporting_facts": [["세종", 1], ["한국", 0]],
        "context": [
            ["한국", ["한국의 수도는 서울이다.", " 한국은 한글을 쓴다."]],
            ["세종", ["세종은 조선의 왕이다.", " 세종은 한글을 만들었다."]],
            ["일본", ["일본의 수도는 도쿄이다."]],
        ],
    },
    {
        "_id": "q2",
        "question": "한글을 만든 왕은?",
        "answer": "세종",
        "supporting_facts": [["세종", 1]],
        "context": [["세종", ["세종은 조선의 왕이다.", " 세종은 한글을 만들었다."]], ["한국", ["다른 판본."]]],
    },
]


def write(tmp_path, records, name="hotpot.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def test_paragraphs_are_shared_and_gold_follows_the_supporting_facts(tmp_path):
    qa = read_hotpotqa(write(tmp_path, RECORDS))
    # "세종" is one document for both questions; "한국" comes with two texts, so two documents
    assert qa.corpus.ids == ["한국", "세종", "일본", "한국 (2)"]
    q1, q2 = qa.examples
    assert q1.doc_ids == ("세종", "한국") and q1.answers == ("서울",)  # hop order, not context order
    assert q2.doc_ids == ("세종",)
    doc = qa.corpus.get("세종")
    assert doc.text == "세종은 조선의 왕이다. 세종은 한글을 만들었다." and doc.title == "세종"
    start = doc.meta["sentence_starts"][1]
    assert doc.text[start:] == " 세종은 한글을 만들었다."
    assert qa.corpus.get("한국 (2)").text == "다른 판본."


def test_detected_as_its_own_format_beside_squad(tmp_path):
    path = write(tmp_path, RECORDS)
    assert detect_format(path) == "hotpotqa"
    assert len(load(path).examples) == 2
    squad = tmp_path / "squad.json"
    squad.write_text('\ufeff {"data": []}', encoding="utf-8")
    assert detect_format(squad) == "korquad"


def test_test_files_without_answers_read_with_none(tmp_path):
    record = {k: v for k, v in RECORDS[1].items() if k not in ("answer", "supporting_facts")}
    (ex,) = read_hotpotqa(write(tmp_path, [record])).examples
    assert ex.answers == () and ex.doc_ids == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"question": ""}, r"\[0\] \(_id='q1'\): field 'question': is empty"),
        ({"context": [["세종", "not a list"]]}, r"context\[0\]: field 'context': expected \[title"),
        ({"supporting_facts": [["없는 문서", 0]]}, r"supporting_facts\[0\]: supporting title '없는 문서' is not"),
        ({"supporting_facts": [["세종"]]}, r"field 'supporting_facts': expected \[title, sentence index\]"),
    ],
)
def test_bad_records_name_record_and_field(tmp_path, change, message):
    with pytest.raises(DataError, match=message):
        read_hotpotqa(write(tmp_path, [{**RECORDS[0], **change}]))


def test_duplicate_ids_and_wrong_layout(tmp_path):
    with pytest.raises(DataError, match=r"\[1\] \(_id='q1'\): field '_id': duplicate question id \(first at \[0\]\)"):
        read_hotpotqa(write(tmp_path, [RECORDS[0], RECORDS[0]]))
    with pytest.raises(DataError, match="expected a JSON list"):
        read_hotpotqa(write(tmp_path, {"data": []}))
