import pytest

from korag.data.chunk import ChunkConfig, chunk_corpus, chunk_document, chunk_spans, split_sentences
from korag.data.clean import clean_html, html_to_text, looks_like_html, normalize_text
from korag.data.schema import Corpus, Document
from korag.text.tokenize import make_tokenizer


def test_html_cleaning():
    html = (
        "<html><head><style>p {}</style><script>alert('x')</script></head><body>"
        "<div>첫&nbsp;줄&amp;<i>기울임</i></div><noscript>숨김</noscript>"
        "<ul><li>하나</li><li>둘</li></ul>본문&#44032;&lt;끝&gt;</body></html>"
    )
    assert html_to_text(html) == "첫 줄&기울임\n하나\n둘\n본문가<끝>"
    assert html_to_text("<p>  여러   공백\t\n  줄  </p><p></p>") == "여러 공백 줄"
    assert html_to_text("깨진 <b>태그 <i>열림") == "깨진 태그 열림"
    assert looks_like_html("a <br/> b") and not looks_like_html("a < b")


def test_html_offsets_map_back_to_text():
    html = "<p>앞부분</p><p>정답은 <b>세종대왕</b>이다</p>"
    cleaned = clean_html(html)
    i = cleaned.to_text_offset(html.index("세종대왕"))
    assert cleaned.text[i : i + 4] == "세종대왕"


def test_normalize_text_composes_hangul_and_drops_invisibles():
    decomposed = "\u1112\u1161\u11ab\u1100\u1173\u11af"  # 한글 as jamo
    assert normalize_text(decomposed) == "한글"
    assert normalize_text("가\u200b나\u00a0다\r\n\n\n라", keep_newlines=True) == "가나 다\n라"
    assert normalize_text(" a \n b ") == "a b"


TEXT = (
    "세종은 조선의 제4대 왕이다. 그는 훈민정음을 창제하였다! 집현전을 설치했는가? "
    "측우기와 해시계도 만들었다.\n두 번째 문단은 여기서 시작한다. 마지막 문장이다."
)


@pytest.mark.parametrize("splitter", ["regex", "kiwi"])
def test_sentence_splitters(splitter):
    spans = split_sentences(TEXT, splitter)
    sents = [TEXT[s.start : s.end] for s in spans]
    assert sents[0] == "세종은 조선의 제4대 왕이다."
    assert "그는 훈민정음을 창제하였다!" in sents
    assert "두 번째 문단은 여기서 시작한다." in sents
    assert len(sents) == 6


def test_chunks_respect_budget_and_overlap():
    tok = make_tokenizer("whitespace")
    cfg = ChunkConfig(max_tokens=8, overlap_tokens=4, splitter="regex")
    spans = chunk_spans(TEXT, cfg)
    pieces = [TEXT[s.start : s.end] for s in spans]
    assert len(pieces) > 2
    assert all(len(tok.tokenize(p)) <= 8 for p in pieces)
    # consecutive passages share a trailing sentence (overlap) and the whole text is covered
    assert any(pieces[i].split(". ")[-1] in pieces[i + 1] for i in range(len(pieces) - 1))
    assert spans[0].start == 0 and spans[-1].end == len(TEXT.rstrip())


def test_overlong_sentence_is_cut_at_words():
    long = " ".join(f"단어{i}" for i in range(50)) + "."
    spans = chunk_spans(long, ChunkConfig(max_tokens=10, overlap_tokens=2, splitter="regex"))
    assert len(spans) >= 5
    assert all(len(long[s.start : s.end].split()) <= 10 for s in spans)
    assert long[spans[-1].start : spans[-1].end].endswith("단어49.")


def test_chunk_document_ids_and_offsets():
    doc = Document("d", TEXT, "세종", {"src": "x"})
    parts = chunk_document(doc, ChunkConfig(max_tokens=10, overlap_tokens=0, splitter="regex"))
    assert [p.id for p in parts] == [f"d#{i}" for i in range(len(parts))]
    for p in parts:
        assert TEXT[p.meta["char_start"] : p.meta["char_end"]] == p.text
        assert p.meta["source_id"] == "d" and p.meta["src"] == "x" and p.title == "세종"
    short = Document("s", "짧은 문서.")
    assert chunk_document(short, ChunkConfig(max_tokens=10, overlap_tokens=0)) == [short]
    assert (
        len(chunk_corpus(Corpus.from_documents([doc, short]), ChunkConfig(max_tokens=10, overlap_tokens=0)))
        == len(parts) + 1
    )


def test_chunk_config_validation():
    with pytest.raises(ValueError, match="overlap_tokens must be smaller"):
        ChunkConfig(max_tokens=10, overlap_tokens=10)
    with pytest.raises(ValueError):
        ChunkConfig(max_tokens=10, unknown=1)
