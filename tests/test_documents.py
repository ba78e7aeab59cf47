"""PDF, text and folder loading (PDFs are generated with reportlab's built-in Korean CID font)."""

from pathlib import Path

import pytest

from korag.data.chunk import ChunkConfig
from korag.data.folder import read_folder
from korag.data.load import load
from korag.data.pdf import pages_of, read_pdf
from korag.data.plaintext import read_text_file
from korag.errors import DataError

PAGES = [
    ["대한민국의 수도는 서울이다. 서울에는 한강이 흐른다.", "Python 3.12 버전이 출시되었다."],
    ["두 번째 쪽의 문장입니다. 부산은 항구 도시이다."],
]


def make_pdf(path: Path, pages=PAGES, password: str | None = None) -> Path:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("HYSMyeongJo-Medium"))
    c = canvas.Canvas(str(path))
    c.setTitle("시험 문서")
    for lines in pages:
        c.setFont("HYSMyeongJo-Medium", 11)
        for i, line in enumerate(lines):
            c.drawString(72, 760 - 18 * i, line)
        c.showPage()
    c.save()
    if password:
        from pypdf import PdfReader, PdfWriter

        w = PdfWriter()
        for p in PdfReader(path).pages:
            w.add_page(p)
        w.encrypt(password, algorithm="AES-128")
        with path.open("wb") as fh:
            w.write(fh)
    return path


def test_pdf_text_title_and_pages(tmp_path):
    doc = read_pdf(make_pdf(tmp_path / "a.pdf"))
    assert doc.id == "a.pdf" and doc.title == "시험 문서"
    assert "대한민국의 수도는 서울이다." in doc.text
    assert "부산은 항구 도시이다." in doc.text
    assert doc.meta["pages"] == 2
    second = doc.text.index("두 번째")
    assert pages_of(doc.meta["page_starts"], second, second + 3) == [2]
    assert pages_of(doc.meta["page_starts"], 0, len(doc.text)) == [1, 2]


def test_encrypted_pdf_is_a_clear_error(tmp_path):
    path = make_pdf(tmp_path / "secret.pdf", password="비밀")
    with pytest.raises(DataError, match=r"secret.pdf: PDF is encrypted"):
        read_pdf(path)


def test_corrupt_pdf_is_a_clear_error(tmp_path):
    good = make_pdf(tmp_path / "good.pdf").read_bytes()
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(good[: len(good) // 3])
    with pytest.raises(DataError, match=r"bad.pdf: (corrupt or unreadable PDF|no extractable text)"):
        read_pdf(bad)
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.4 this is not a pdf")
    with pytest.raises(DataError, match=r"junk.pdf: (corrupt or unreadable PDF|no extractable text)"):
        read_pdf(junk)


def test_text_and_html_files(tmp_path):
    (tmp_path / "n.txt").write_text("첫 줄\r\n\r\n둘째   줄\n", encoding="utf-8")
    assert read_text_file(tmp_path / "n.txt").text == "첫 줄\n둘째 줄"
    (tmp_path / "p.html").write_text("<p>가</p><script>x</script><p>나</p>", encoding="utf-8")
    assert read_text_file(tmp_path / "p.html").text == "가\n나"
    (tmp_path / "e.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"e\.txt: file has no text"):
        read_text_file(tmp_path / "e.txt")


def make_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    make_pdf(root / "sub" / "b.pdf")
    (root / "a.txt").write_text("세종은 훈민정음을 만들었다. " * 30, encoding="utf-8")
    (root / "c.md").write_text("# 제목\n\n짧은 마크다운 문서.", encoding="utf-8")
    (root / ".hidden.txt").write_text("숨김 파일", encoding="utf-8")
    (root / "ignored.bin").write_bytes(b"\x00\x01")
    return root


def test_folder_loading_is_parallel_and_deterministic(tmp_path):
    root = make_folder(tmp_path / "docs")
    cfg = ChunkConfig(max_tokens=40, overlap_tokens=8, splitter="kiwi")
    serial = read_folder(root, chunk=cfg, workers=1)
    parallel = read_folder(root, chunk=cfg, workers=2)
    assert serial.ids == parallel.ids and serial.texts == parallel.texts
    assert serial.ids[0].startswith("a.txt#")
    assert "c.md" in serial.ids
    pdf_parts = [d for d in serial if d.id.startswith("sub/b.pdf")]
    assert pdf_parts and all("pages" in d.meta and "page_starts" not in d.meta for d in pdf_parts)
    assert not any(".hidden" in i for i in serial.ids)
    assert isinstance(load(root), type(serial))


def test_folder_with_a_bad_file_names_it(tmp_path):
    from korag.data.folder import LoadReport

    root = make_folder(tmp_path / "docs")
    whole = read_folder(root, workers=2)
    (root / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(DataError, match=r"bad\.pdf"):
        read_folder(root, workers=2, strict=True)
    (root / "bad.pdf").unlink()
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt: line 1: not valid UTF-8"):
        read_folder(root, workers=2, strict=True)
    # by default the file is skipped, named with its reason, and the rest loads unchanged
    report = LoadReport()
    corpus = read_folder(root, workers=2, report=report)
    assert corpus.ids == whole.ids and len(report.skipped) == 1
    assert report.skipped[0][0].endswith("latin1.txt") and "not valid UTF-8" in report.skipped[0][1]
