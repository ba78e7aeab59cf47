"""The web page of `korag serve` in a real headless Chromium (Playwright driving the system
browser; `scripts/setup` installs Debian's `chromium` and `fonts-noto-cjk`): search in Korean,
upload a file and find it, ask and follow a citation, remove a document. Screenshots of each
state go to ``$KORAG_SCREENSHOTS`` (the serve bench sets it to docs/images/serve) or the test's
temporary directory."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
playwright = pytest.importorskip("playwright.sync_api")

from korag.collections import Collection, CollectionConfig  # noqa: E402
from korag.collections.config import AskSettings  # noqa: E402
from korag.data.chunk import ChunkConfig  # noqa: E402
from korag.data.schema import Document  # noqa: E402
from korag.serve.app import create_app  # noqa: E402

KEY = "browser-test-key"
TEXTS = {
    "seoul.txt": ("서울", "대한민국의 수도는 서울이다. 서울에는 한강이 흐른다."),
    "jeju.txt": ("제주", "제주도에는 한라산이 있다. 한라산의 높이는 1,947미터이다."),
    "busan.txt": ("부산", "부산은 대한민국 제2의 도시이며 항구 도시이다."),
}


def chromium() -> str:
    """The system Chromium; absent only outside CI (in CI, scripts/setup must have installed it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: scripts/setup installs it (apt-get install chromium fonts-noto-cjk)")
        pytest.skip("no system Chromium (scripts/setup installs it)")
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A server on a free loopback port with a small collection and the offline Gemma reader."""
    import uvicorn

    root = tmp_path_factory.mktemp("serve") / "docs"
    coll = Collection.create(root, CollectionConfig(name="docs", chunk=ChunkConfig(max_tokens=8, overlap_tokens=0)))
    coll.add_texts([Document(name, text, title) for name, (title, text) in TEXTS.items()])
    app = create_app({"docs": coll}, ask=AskSettings(k=2, max_tokens=24), write_key=KEY)
    app.state.korag.reader()  # load Gemma before the page waits on it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(live):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800}, locale="ko-KR")
        page.goto(f"{live}/?key={KEY}")
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("KORAG_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _tab(page, label: str) -> None:
    page.get_by_role("button", name=label, exact=True).click()


def test_a_korean_question_finds_its_passage_first(page, shots):
    from playwright.sync_api import expect

    expect(page.get_by_test_id("summary")).to_contain_text("문서 3개")
    page.get_by_test_id("search-input").fill("한라산의 높이는?")
    page.get_by_test_id("search-button").click()
    first = page.get_by_test_id("result").first
    expect(first).to_have_attribute("data-document", "jeju.txt")
    expect(first.locator("mark").first).to_have_text("한라산")
    page.screenshot(path=shots / "search.png", full_page=True)


def test_an_uploaded_file_is_listed_and_found(page, shots, tmp_path):
    from playwright.sync_api import expect

    note = tmp_path / "ulleung.txt"
    note.write_text("울릉도는 동해에 있는 화산섬이며 오징어가 유명하다.", encoding="utf-8")
    _tab(page, "문서")
    page.get_by_test_id("upload-input").set_input_files(str(note))
    page.get_by_test_id("upload-button").click()
    expect(page.get_by_test_id("upload-status")).to_contain_text("추가 1")
    expect(page.locator('[data-testid="doc-row"][data-document="ulleung.txt"]')).to_be_visible()
    page.screenshot(path=shots / "upload.png", full_page=True)
    _tab(page, "검색")
    page.get_by_test_id("search-input").fill("울릉도 오징어")
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("result").first).to_have_attribute("data-document", "ulleung.txt")


def test_ask_streams_a_cited_answer_whose_citation_links_to_its_passage(page, shots):
    from playwright.sync_api import expect

    _tab(page, "질문")
    page.get_by_test_id("ask-input").fill("한라산의 높이는?")
    page.get_by_test_id("ask-button").click()
    answer = page.get_by_test_id("answer")
    expect(answer).to_have_attribute("data-done", "true", timeout=120_000)
    expect(answer).to_contain_text("1,947")
    expect(page.locator("#source-1")).to_have_attribute("data-document", "jeju.txt")
    citation = answer.get_by_test_id("citation").first
    expect(citation).to_have_attribute("href", "#source-1")
    citation.click()
    assert page.evaluate("location.hash") == "#source-1"
    expect(page.locator("#source-1 .supports")).to_be_visible()  # the answer is in that passage
    page.screenshot(path=shots / "ask.png", full_page=True)


def test_a_document_is_removed_from_the_page(page, shots):
    from playwright.sync_api import expect

    _tab(page, "문서")
    row = page.locator('[data-testid="doc-row"][data-document="busan.txt"]')
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("remove-button").click()
    expect(row).to_have_count(0)
    expect(page.get_by_test_id("summary")).to_contain_text("문서 3개")  # 3 + the upload − busan
    page.screenshot(path=shots / "documents.png", full_page=True)
