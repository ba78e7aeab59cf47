import json
from pathlib import Path

import pytest

from korag.data.beir import read_answers, read_beir, write_beir
from korag.data.chunk import ChunkConfig
from korag.data.jsonl import read_corpus_jsonl
from korag.data.korquad import read_korquad
from korag.data.load import detect_format, load
from korag.data.saved import open_dataset, save_dataset
from korag.data.schema import Corpus, QASet, RetrievalSet
from korag.data.squad import read_squad
from korag.errors import DataError

SQUAD = {
    "version": "test_v1",
    "data": [
        {
            "title": "서울",
            "paragraphs": [
                {
                    "context": "서울은 대한민국의 수도이다. 한강이 도시를 가로지른다.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "대한민국의 수도는?",
                            "answers": [{"text": "서울", "answer_start": 0}],
                        },
                        {
                            "id": "q2",
                            "question": "서울을 가로지르는 강은?",
                            "answers": [{"text": "한강", "answer_start": 99}],
                        },
                    ],
                }
            ],
        },
        {
            "title": "부산",
            "paragraphs": [
                {
                    "context": "부산은 항구 도시이다.",
                    "qas": [{"id": "q3", "question": "항구 도시는?", "answers": [{"text": "부산", "answer_start": 0}]}],
                },
                {"context": "해운대는 부산의 해수욕장이다.", "qas": []},
            ],
        },
    ],
}


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def test_squad_reader_builds_paragraph_retrieval(tmp_path):
    qa = read_squad(write(tmp_path / "s.json", SQUAD))
    assert qa.name == "test_v1"
    assert qa.corpus.ids == ["0-0", "1-0", "1-1"]
    assert qa.corpus.titles == ["서울", "부산", "부산"]
    assert qa.corpus[1].meta == {"article": "부산", "article_index": 1}
    ex = {e.id: e for e in qa.examples}
    assert ex["q1"].doc_ids == ("0-0",)
    # a wrong answer_start is repaired from the text
    assert ex["q2"].answer_starts == (qa.corpus[0].text.index("한강"),)
    rs = qa.to_retrieval_set()
    assert rs.qrels.to_dict() == {"q1": {"0-0": 1}, "q2": {"0-0": 1}, "q3": {"1-0": 1}}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["data"][0]["paragraphs"][0].pop("context"),
            r"data\[0\].paragraphs\[0\]: field 'context': missing field",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(question=7),
            r"qas\[0\] \(id='q1'\): field 'question': expected a string",
        ),
        (
            lambda d: d["data"][1]["paragraphs"][0]["qas"][0].update(id="q1"),
            r"qas\[0\] \(id='q1'\): field 'id': duplicate question id",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(text="없는 답"),
            r"field 'answers\[0\].text': answer '없는 답' does not occur",
        ),
        (lambda d: d["data"][0]["paragraphs"][0].update(context="  "), r"field 'context': is empty"),
        (lambda d: d.update(data={}), r"field 'data'"),
    ],
)
def test_squad_reader_errors_name_record_and_field(tmp_path, mutate, message):
    d = json.loads(json.dumps(SQUAD))
    mutate(d)
    path = write(tmp_path / "bad.json", d)
    with pytest.raises(DataError, match=message) as info:
        read_squad(path)
    assert str(path) in str(info.value)


def test_malformed_json_names_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json: line 3: malformed JSON"):
        read_squad(p)


def test_non_utf8_file_names_line(tmp_path):
    p = tmp_path / "cp949.jsonl"
    p.write_bytes('{"_id": "1", "text": "안녕"}\n'.encode() + '{"_id": "2", "text": "깨진"}\n'.encode("cp949"))
    with pytest.raises(DataError, match=r"cp949.jsonl: line 2: not valid UTF-8"):
        read_corpus_jsonl(p)


def test_korquad_reader_handles_real_dev_set(korquad_dev):
    qa = read_korquad(korquad_dev)
    assert len(qa.corpus) == 964
    assert len(qa.examples) == 5774
    assert len({m["article"] for m in qa.corpus.metas}) == 140
    assert all(qa.corpus.titles)
    e = qa.examples[0]
    assert qa.corpus.get(e.doc_ids[0]).text[e.answer_starts[0] :].startswith(e.answers[0])


KQ2_HTML = (
    "<!DOCTYPE html><html><head><title>무시</title><style>.a{color:red}</style></head><body>"
    "<h1>훈민정음</h1><script>var x = '세종';</script>"
    "<p>훈민정음은 <b>1443년</b>에 세종이 창제하였다.&nbsp;반포는 1446년이다.</p>"
    "<table><tr><th>항목</th><td>값</td></tr><tr><td>자음</td><td>17자</td></tr></table>"
    "<p>한글이라는 이름은 주시경이 붙였다고 알려져 있다.</p></body></html>"
)


def kq2(answer) -> dict:
    return {
        "version": "KorQuAD_2.1_dev",
        "data": [
            {
                "title": "훈민정음",
                "url": "https://ko.wikipedia.org/wiki/훈민정음",
                "context": KQ2_HTML,
                "raw_html": "<html>…</html>",
                "qas": [
                    {"id": "k1", "question": "훈민정음 창제 연도는?", "answer": answer},
                    {"id": "k2", "question": "한글 이름을 붙인 사람은?", "answer": "주시경"},
                ],
            }
        ],
    }


def test_korquad2_html_is_cleaned_and_answers_relocated(tmp_path):
    start = KQ2_HTML.index("<b>1443년</b>")
    path = write(tmp_path / "kq2.json", kq2({"text": "<b>1443년</b>", "answer_start": start, "html_answer_start": 0}))
    qa = read_korquad(path)
    assert len(qa.corpus) == 1
    text = qa.corpus[0].text
    assert "var x" not in text and "color:red" not in text and "무시" not in text
    assert "&nbsp;" not in text and "<" not in text
    assert "창제하였다. 반포는" in text
    assert "자음 17자" in text
    ex = {e.id: e for e in qa.examples}
    assert ex["k1"].answers == ("1443년",)
    assert text[ex["k1"].answer_starts[0] :].startswith("1443년")
    assert ex["k2"].answers == ("주시경",)  # answer given as a plain string


def test_korquad2_chunked_marks_passages_holding_the_answer(tmp_path):
    path = write(tmp_path / "kq2.json", kq2({"text": "1443년"}))
    qa = read_korquad(path, chunk=ChunkConfig(max_tokens=8, overlap_tokens=0, splitter="regex"))
    assert len(qa.corpus) > 1
    for e in qa.examples:
        assert e.doc_ids
        for d in e.doc_ids:
            assert any(a in qa.corpus.get(d).text for a in e.answers)


def test_korquad2_missing_answer_is_an_error(tmp_path):
    d = kq2({"text": "1443년"})
    del d["data"][0]["qas"][0]["answer"]
    with pytest.raises(DataError, match=r"qas\[0\] \(id='k1'\): field 'answer': missing field"):
        read_korquad(write(tmp_path / "kq2.json", d))


def make_beir(tmp_path: Path) -> Path:
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "서울", "text": "서울은 수도이다."}\n{"_id": 2, "title": "", "text": "부산은 항구이다."}\n',
        encoding="utf-8",
    )
    (d / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "수도는?"}\n{"_id": "q2", "text": "항구는?"}\n{"_id": "q3", "text": "기타"}\n',
        encoding="utf-8",
    )
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\t2\t2\n", encoding="utf-8")
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\t1\n", encoding="utf-8")
    return d


def test_beir_reader_and_writer_round_trip(tmp_path):
    d = make_beir(tmp_path)
    assert detect_format(d) == "beir"
    rs = read_beir(d)
    assert rs.corpus.ids == ["d1", "2"]
    assert rs.queries.ids == ["q1", "q2"]  # only the split's queries
    assert rs.qrels.to_dict() == {"q1": {"d1": 1}, "q2": {"2": 2}}
    assert read_beir(d, "train").queries.ids == ["q3"]
    out = write_beir(rs, tmp_path / "copy", answers={"q1": ["서울"]})
    again = read_beir(out)
    assert again.corpus.ids == rs.corpus.ids and again.corpus.texts == rs.corpus.texts
    assert again.qrels == rs.qrels
    assert read_answers(out) == {"q1": ("서울",)}
    with pytest.raises(FileExistsError):
        write_beir(rs, out)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq1\tnope\t1\n",
            r"test.tsv: line 2: field 'corpus-id': unknown document 'nope'",
        ),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq9\td1\t1\n",
            r"test.tsv: line 2: field 'query-id': unknown query 'q9'",
        ),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq1\td1\n",
            r"test.tsv: line 2: expected 3 tab-separated columns",
        ),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq1\td1\thigh\n",
            r"line 2: field 'score': score 'high' is not a number",
        ),
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n',
            r"corpus.jsonl: line 2: field '_id': duplicate document id 'd1' \(first on line 1\)",
        ),
        ("corpus.jsonl", '{"_id": "d1", "text": ""}\n', r"corpus.jsonl: line 1 \(id='d1'\): field 'text': is empty"),
        ("corpus.jsonl", '{"_id": "d1"}\n', r"corpus.jsonl: line 1 \(id='d1'\): field 'text': missing field"),
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b",}\n',
            r"corpus.jsonl: line 2: malformed JSON",
        ),
        ("queries.jsonl", '{"text": "질문"}\n', r"queries.jsonl: line 1: field '_id': missing field"),
    ],
)
def test_beir_bad_input(tmp_path, file, content, message):
    d = make_beir(tmp_path)
    (d / file).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_beir(d)


def test_beir_missing_split_lists_available(tmp_path):
    with pytest.raises(DataError, match="no qrels for split 'dev'; available: test, train"):
        read_beir(make_beir(tmp_path), "dev")


def test_jsonl_corpus_detects_fields(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text('{"id": "x", "contents": "본문", "title": "제목", "metadata": {"y": 1}}\n', encoding="utf-8")
    c = read_corpus_jsonl(p)
    assert c.ids == ["x"] and c.texts == ["본문"] and c.titles == ["제목"] and c[0].meta == {"y": 1}
    p.write_text('{"body": "첫째"}\n{"body": "둘째"}\n', encoding="utf-8")
    assert read_corpus_jsonl(p).ids == ["1", "2"]  # numbered by line when there is no id field


def test_saved_dataset_round_trip(tmp_path):
    qa = read_squad(write(tmp_path / "s.json", SQUAD))
    back = open_dataset(save_dataset(qa, tmp_path / "saved"))
    assert isinstance(back, QASet)
    assert back.examples == qa.examples
    assert back.corpus.metas == qa.corpus.metas
    rs = RetrievalSet(
        Corpus(["a"], ["x"]), qa.to_retrieval_set().queries.subset([]), qa.to_retrieval_set().qrels.restrict([])
    )
    assert isinstance(open_dataset(save_dataset(rs.corpus, tmp_path / "c")), Corpus)


def test_load_detects_formats(tmp_path):
    assert isinstance(load(write(tmp_path / "s.json", SQUAD)), QASet)
    assert isinstance(load(make_beir(tmp_path)), RetrievalSet)
    with pytest.raises(DataError, match="no such file or directory"):
        load(tmp_path / "missing.json")
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(DataError, match="cannot tell the format"):
        load(tmp_path / "x.xyz")
