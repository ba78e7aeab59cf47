// korag's web page: search, ask (streamed answer with linked citations), upload and remove.
// Plain browser JavaScript, no build step. Text from the server is always set as text, never
// as HTML: marked terms arrive as segments and become <mark> elements here.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("key")) {
  sessionStorage.setItem("korag-key", params.get("key"));
  history.replaceState(null, "", location.pathname); // keep the key out of the address bar
}

function headers(extra = {}) {
  const key = sessionStorage.getItem("korag-key");
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.status === 401) {
    const key = prompt("이 서버는 API 키가 필요합니다. 키를 입력하세요:");
    if (key) { sessionStorage.setItem("korag-key", key); return api(path, options); }
  }
  if (!response.ok) throw new Error(body?.error || `HTTP ${response.status}`);
  return body;
}

const collection = () => encodeURIComponent($("collection").value);

function where(hit) {
  const pages = hit.pages || [];
  if (!pages.length) return hit.document || hit.file;
  const p = pages.length === 1 ? `${pages[0]}쪽` : `${pages[0]}–${pages[pages.length - 1]}쪽`;
  return `${hit.document || hit.file} · ${p}`;
}

function excerptNode(segments) {
  const span = document.createElement("span");
  for (const s of segments) {
    const node = s.mark ? document.createElement("mark") : document.createElement("span");
    node.textContent = s.text;
    span.appendChild(node);
  }
  return span;
}

function hitItem(hit, id) {
  const li = document.createElement("li");
  if (id) li.id = id;
  li.dataset.testid = "result";
  li.dataset.document = hit.document;
  const head = document.createElement("div");
  const src = document.createElement("span");
  src.className = "source";
  src.textContent = where(hit);
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `점수 ${hit.score.toFixed(3)}`;
  head.append(src, score);
  li.append(head, excerptNode(hit.excerpt));
  return li;
}

async function loadCollections() {
  const list = await api("/collections");
  const select = $("collection");
  select.replaceChildren(...list.map((c) => new Option(c.name, c.name)));
  if (!list.length) $("summary").textContent = "컬렉션이 없습니다 (korag collection create)";
  await refresh();
}

async function refresh() {
  if (!$("collection").value) return;
  const info = await api(`/collections/${collection()}`);
  $("summary").textContent = `문서 ${info.documents}개 · 단락 ${info.passages}개 · ${info.retrievers.join(", ")}`;
  const rows = info.document_list.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "doc-row";
    tr.dataset.document = d.id;
    for (const text of [d.id, d.title, d.pages ?? "", d.passages]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    const button = document.createElement("button");
    button.textContent = "삭제";
    button.dataset.testid = "remove-button";
    button.onclick = async () => {
      if (!confirm(`${d.id} 문서를 삭제할까요?`)) return;
      try {
        await api(`/collections/${collection()}/documents/${encodeURIComponent(d.id)}`, { method: "DELETE" });
        $("upload-status").textContent = `${d.id} 삭제됨`;
      } catch (e) { $("upload-status").textContent = e.message; }
      refresh();
    };
    const td = document.createElement("td");
    td.appendChild(button);
    tr.appendChild(td);
    return tr;
  });
  $("doc-list").replaceChildren(...rows);
}

$("search-form").onsubmit = async (event) => {
  event.preventDefault();
  $("search-status").textContent = "검색 중…";
  try {
    const body = { query: $("search-input").value, k: 10, retriever: $("retriever").value || null };
    const r = await api(`/collections/${collection()}/search`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    $("results").replaceChildren(...r.results.map((h) => hitItem(h)));
    $("search-status").textContent = r.results.length
      ? `${r.results.length}개 결과 (${r.retriever}, ${(r.seconds * 1000).toFixed(0)} ms)` : "맞는 단락이 없습니다";
  } catch (e) {
    $("search-status").textContent = e.message;
  }
};

function linkCitations(container, text, count) {
  // "[2]" and "[1, 3]" become links to the numbered sources below
  container.replaceChildren();
  let last = 0;
  for (const m of text.matchAll(/\[(\d+(?:\s*,\s*\d+)*)\]/g)) {
    container.append(text.slice(last, m.index));
    const nums = m[1].split(",").map((n) => parseInt(n, 10));
    container.append("[");
    nums.forEach((n, i) => {
      if (i) container.append(", ");
      if (n >= 1 && n <= count) {
        const a = document.createElement("a");
        a.href = `#source-${n}`;
        a.textContent = String(n);
        a.dataset.testid = "citation";
        container.append(a);
      } else container.append(String(n));
    });
    container.append("]");
    last = m.index + m[0].length;
  }
  container.append(text.slice(last));
}

function parseEvents(buffer, onEvent) {
  const blocks = buffer.split("\n\n");
  for (const block of blocks.slice(0, -1)) {
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (data) onEvent(event, JSON.parse(data));
  }
  return blocks[blocks.length - 1];
}

$("ask-form").onsubmit = async (event) => {
  event.preventDefault();
  const answer = $("answer");
  answer.textContent = "";
  $("sources").replaceChildren();
  $("sources-title").hidden = true;
  $("ask-status").textContent = "찾는 중…";
  let text = "", count = 0;
  const onEvent = (kind, data) => {
    if (kind === "sources") {
      count = data.sources.length;
      $("sources").replaceChildren(...data.sources.map((h) => hitItem(h, `source-${h.n}`)));
      $("sources-title").hidden = false;
      $("ask-status").textContent = "답을 쓰는 중…";
    } else if (kind === "token") {
      text += data.text;
      answer.textContent = text;
    } else if (kind === "answer") {
      linkCitations(answer, data.raw, count);
      for (const n of data.cited) $(`source-${n}`)?.classList.add("cited");
      for (const n of data.supported) {
        const item = $(`source-${n}`);
        if (!item) continue;
        const tag = document.createElement("span");
        tag.className = "supports";
        tag.textContent = "답이 들어 있음";
        item.firstChild.appendChild(tag);
      }
      const s = (data.timings.retrieve_seconds + (data.timings.answer_seconds || 0)).toFixed(1);
      $("ask-status").textContent = `${(data.reader.model || data.reader.backend).split("/").pop()} · ${s}초`;
      answer.dataset.done = "true";
    } else if (kind === "error") {
      $("ask-status").textContent = data.error;
    }
  };
  try {
    const response = await fetch(`/collections/${collection()}/ask`, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ question: $("ask-input").value, stream: true }),
    });
    if (!response.ok) throw new Error((await response.json()).error || `HTTP ${response.status}`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), onEvent);
    }
  } catch (e) {
    $("ask-status").textContent = e.message;
  }
};

$("upload-form").onsubmit = (event) => {
  event.preventDefault();
  const files = $("upload-input").files;
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const xhr = new XMLHttpRequest();
  const progress = $("upload-progress");
  progress.hidden = false;
  progress.value = 0;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total; };
  xhr.onload = () => {
    progress.value = 100;
    let r = {};
    try { r = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 401) {
      const key = prompt("문서를 올리려면 API 키가 필요합니다. 키를 입력하세요:");
      if (key) { sessionStorage.setItem("korag-key", key); $("upload-form").requestSubmit(); }
      return;
    }
    const skipped = (r.skipped || []).map((s) => `${s.file}: ${s.reason}`);
    $("upload-status").textContent = xhr.status === 200 || xhr.status === 422
      ? `추가 ${r.added.length} · 교체 ${r.replaced.length} · 변경 없음 ${r.unchanged.length} · 건너뜀 ${skipped.length}`
        + (skipped.length ? ` (${skipped.join("; ")})` : "")
      : r.error || `HTTP ${xhr.status}`;
    refresh();
  };
  xhr.onerror = () => { $("upload-status").textContent = "올리기에 실패했습니다"; };
  xhr.open("POST", `/collections/${collection()}/documents`);
  for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
  $("upload-status").textContent = "올리는 중…";
  xhr.send(form);
};

for (const tab of document.querySelectorAll(".tab")) {
  tab.onclick = () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab.dataset.tab);
  };
}
$("collection").onchange = refresh;
loadCollections().catch((e) => { $("summary").textContent = e.message; });
