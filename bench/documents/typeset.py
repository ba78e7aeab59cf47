#!/usr/bin/env python3
"""Typeset the korag Korean PDF benchmark: ``python typeset.py OUTDIR``.

Turns every ``content/*.json`` next to this script into a PDF with reportlab, using only
reportlab's built-in Korean CID fonts (HYSMyeongJo-Medium, HYGothic-Medium), so no font
file is needed and pypdf extracts the text. Output is deterministic (``invariant=1``).

Layouts:
  paper  - A4 two-column journal paper: full-width title block on page 1, running headers
           with journal page numbers, footnotes at the bottom of the column where their
           marker lands, a vector figure (no text objects), a table, a reference list.
  report - A4 single-column report: cover page, running header and "- n -" footer on every
           other page, bullets, tables, page-bottom footnotes, a scanned (raster) appendix.
  slides - A4 landscape slides: one slide per page, running footer, tables, FAQ, and one
           image-only slide (a raster map; the page has no text objects at all).

Inline markup in the content text: ``[^N]`` is footnote N (superscript ``N)`` in the text,
the note itself at the bottom of the column/page), ``^{x}`` is a superscript.
"""

from __future__ import annotations

import io
import json
import random
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Drawing, Line, Rect
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_JUSTIFY, TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Frame,
    FrameBreak,
    Image,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

HERE = Path(__file__).resolve().parent
SERIF = "HYSMyeongJo-Medium"
SANS = "HYGothic-Medium"
for _name in (SERIF, SANS):
    pdfmetrics.registerFont(UnicodeCIDFont(_name))

FN = re.compile(r"\[\^(\w+)\]")
SUP = re.compile(r"\^\{([^}]*)\}")


def rich(text: str) -> str:
    """Content text -> reportlab paragraph markup (footnote anchors + superscripts)."""
    s = escape(text)
    s = FN.sub(lambda m: f'<a name="fn-{m.group(1)}"/><super>{m.group(1)})</super>', s)
    return SUP.sub(lambda m: f"<super>{m.group(1)}</super>", s)


def plain(text: str) -> str:
    """Content text without markup (what a reader sees, footnote numbers dropped)."""
    return SUP.sub(lambda m: m.group(1), FN.sub("", text))


def style(name, font=SERIF, size=10.0, leading=None, cjk=True, align=TA_JUSTIFY, **kw):
    return ParagraphStyle(
        name,
        fontName=font,
        fontSize=size,
        leading=leading or size * 1.5,
        alignment=align,
        wordWrap="CJK" if cjk else None,
        **kw,
    )


# --------------------------------------------------------------------------- footnotes


class NotedDoc(BaseDocTemplate):
    """A doc template whose frames shrink to make room for the footnotes of that page.

    ``plan`` maps (page, frame id) -> footnote keys to place at the bottom of that frame; it
    comes from the previous pass, which recorded where each footnote marker was drawn
    (markers carry ``<a name="fn-N"/>`` anchors, caught by the canvas below). `build_noted`
    repeats the layout until the plan no longer changes.
    """

    def __init__(self, filename, *, notes, note_style, plan, **kw):
        self.notes = notes
        self.note_style = note_style
        self.plan = plan
        self.hits: dict[str, tuple[int, str]] = {}
        super().__init__(filename, **kw)

    def _note_flowables(self, keys):
        out = []
        for k in keys:
            text = self.notes[k]
            label = "" if k.startswith("@") else f"{k}) "
            out.append(Paragraph(rich(label + text), self.note_style))
        return out

    def notes_height(self, keys, width):
        if not keys:
            return 0
        return 9 + sum(p.wrap(width, 10_000)[1] + 1.5 for p in self._note_flowables(keys))

    def reserve(self):
        """onPage hook: give each frame of this page its footnote-free height."""
        for f in self.pageTemplate.frames:
            x, y, w, h = f._base
            res = self.notes_height(self.plan.get((self.page, f.id)), w)
            f.__init__(x, y + res, w, h - res, id=f.id, leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
            f._base = (x, y, w, h)

    def draw_notes(self, canv):
        """onPageEnd hook: draw the footnotes of this page under their frames."""
        for f in self.pageTemplate.frames:
            keys = self.plan.get((self.page, f.id))
            if not keys:
                continue
            x, y, w, _h = f._base
            top = y + self.notes_height(keys, w)
            canv.saveState()
            canv.setLineWidth(0.5)
            canv.line(x, top - 3, x + min(80, w / 3), top - 3)
            canv.restoreState()
            cur = top - 8
            for p in self._note_flowables(keys):
                _, ph = p.wrap(w, 10_000)
                p.drawOn(canv, x, cur - ph)
                cur -= ph + 1.5


def frame(x, y, w, h, fid):
    f = Frame(x, y, w, h, id=fid, leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
    f._base = (x, y, w, h)
    return f


def build_noted(make_doc, make_story, fixed):
    """Lay out until footnote placement is stable; the last pass is the written PDF."""
    plan = {k: list(v) for k, v in fixed.items()}
    for _ in range(12):
        doc = make_doc(plan)

        def maker(*a, _doc=doc, **kw):
            c = rl_canvas.Canvas(*a, **kw)
            c.bookmarkHorizontal = lambda key, x, y, _c=c: _doc.hits.setdefault(key, (_doc.page, _doc.frame.id))
            return c

        doc.build(make_story(), canvasmaker=maker)
        new = {k: list(v) for k, v in fixed.items()}
        for key, where in sorted(doc.hits.items(), key=lambda kv: int(kv[0][3:])):
            new.setdefault(where, []).append(key[3:])
        if new == plan:
            return doc
        plan = new
    raise RuntimeError("footnote placement did not converge")


# --------------------------------------------------------------------------- pieces


def bar_chart(spec, width, height=150):
    """A grouped bar chart as pure vector graphics: bars, error bars, axes, grid, legend
    swatches - deliberately no text objects (labels live in the caption)."""
    d = Drawing(width, height)
    left, bottom, top = 14, 14, height - 22
    plot_w = width - left - 6
    ymax, ystep = spec["ymax"], spec["ystep"]
    scale = (top - bottom) / ymax
    for v in range(0, ymax + 1, ystep):
        y = bottom + v * scale
        d.add(Line(left, y, left + plot_w, y, strokeColor=colors.HexColor("#cccccc"), strokeWidth=0.4))
        d.add(Line(left - 3, y, left, y, strokeWidth=0.6))
    d.add(Line(left, bottom, left, top, strokeWidth=0.8))
    d.add(Line(left, bottom, left + plot_w, bottom, strokeWidth=0.8))
    series = spec["series"]
    groups = len(series[0])
    gw = plot_w / groups
    bw = gw * 0.8 / len(series)
    for g in range(groups):
        d.add(Line(left + gw * (g + 1), bottom, left + gw * (g + 1), bottom - 3, strokeWidth=0.6))
        for s, values in enumerate(series):
            x = left + gw * g + gw * 0.1 + bw * s
            h = values[g] * scale
            d.add(
                Rect(
                    x,
                    bottom,
                    bw,
                    h,
                    fillColor=colors.HexColor(spec["fills"][s]),
                    strokeColor=colors.black,
                    strokeWidth=0.5,
                )
            )
            e = spec["errors"][s][g] * scale
            cx = x + bw / 2
            d.add(Line(cx, bottom + h - e, cx, bottom + h + e, strokeWidth=0.6))
            d.add(Line(cx - 2, bottom + h + e, cx + 2, bottom + h + e, strokeWidth=0.6))
    for s, fill in enumerate(spec["fills"]):  # legend swatches, top left
        d.add(
            Rect(
                left + 8 + s * 22,
                height - 14,
                14,
                8,
                fillColor=colors.HexColor(fill),
                strokeColor=colors.black,
                strokeWidth=0.5,
            )
        )
    return d


def table(rows, width, widths, head_style, cell_style, grid=True, head_bg="#e6e6e6"):
    data = [[Paragraph(rich(c), head_style if i == 0 else cell_style) for c in row] for i, row in enumerate(rows)]
    t = Table(data, colWidths=[width * w for w in widths], repeatRows=1)
    cmds = [
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor(head_bg)),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if grid:
        cmds.append(("GRID", (0, 0), (-1, -1), 0.5, colors.black))
    else:  # journal style: rules above/below the header and at the bottom only
        cmds += [
            ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
            ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.black),
        ]
    t.setStyle(TableStyle(cmds))
    return t


def png(img) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False)
    buf.seek(0)
    return buf


def scan_image(wpx=900, hpx=1060):
    """A 'scanned' results sheet: paper tone, ruled table, bars and dark strokes that look
    like printed text lines - all pixels, nothing extractable."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    rnd = random.Random(2026)
    img = PILImage.new("L", (wpx, hpx), 236)
    d = ImageDraw.Draw(img)
    d.rectangle([60, 50, wpx - 60, 110], fill=200)
    for i in range(8):  # "title text"
        d.rectangle([220 + i * 58, 70, 262 + i * 58, 92], fill=60)
    top = 150
    for r in range(13):  # ruled table with "text" strokes and bars
        y = top + r * 52
        d.line([60, y, wpx - 60, y], fill=90, width=2)
        if r == 12:
            break
        for c, (x0, span) in enumerate([(75, 200), (300, 90), (420, 90)]):
            n = rnd.randint(3, 7) if c == 0 else rnd.randint(2, 3)
            for k in range(n):
                d.rectangle([x0 + k * (span // 7 + 4), y + 18, x0 + k * (span // 7 + 4) + span // 7, y + 36], fill=70)
        if r:
            d.rectangle([540, y + 14, 540 + rnd.randint(60, 290), y + 38], fill=120)
    for x in (60, 290, 410, 530, wpx - 60):
        d.line([x, top, x, top + 12 * 52], fill=90, width=2)
    for k in range(4):  # footnote-like strokes
        d.rectangle([70, 850 + k * 34, 70 + rnd.randint(380, 740), 866 + k * 34], fill=110)
    d.rectangle([wpx - 230, hpx - 120, wpx - 90, hpx - 60], outline=140, width=4)  # stamp
    return img.rotate(0.7, resample=PILImage.BILINEAR, fillcolor=236)


def map_image(wpx=1400, hpx=990):
    """An evacuation-route map slide pasted as a picture: sea, coast, roads, hazard zone,
    green routes with arrows, shelter markers and a legend - no text at all."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (wpx, hpx), (246, 243, 232))
    d = ImageDraw.Draw(img)
    coast = [(0, 640), (180, 610), (330, 655), (520, 600), (700, 640), (900, 590), (1100, 625), (1400, 580)]
    d.polygon([*coast, (wpx, hpx), (0, hpx)], fill=(166, 205, 232))
    inland = [(x, y - 150) for x, y in coast]
    d.polygon(coast[::-1] + inland, fill=(250, 205, 200))  # inundation zone
    for x0, y0, x1, y1 in [
        (0, 430, 1400, 400),
        (250, 0, 300, 640),
        (640, 0, 700, 640),
        (1040, 0, 1100, 620),
        (0, 200, 1400, 180),
    ]:
        d.line([x0, y0, x1, y1], fill=(150, 150, 150), width=16)
    for x in range(0, wpx, 36):  # harbour piers
        if 560 < x < 860:
            d.rectangle([x, 640, x + 10, 700], fill=(120, 120, 120))
    routes = [
        [(120, 600), (150, 430), (270, 300), (280, 150)],
        [(520, 590), (600, 430), (670, 260), (690, 120)],
        [(900, 580), (960, 430), (1070, 300), (1090, 160)],
        [(1250, 570), (1230, 420), (1300, 260)],
    ]
    for pts in routes:
        d.line(pts, fill=(20, 140, 60), width=10)
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
        d.polygon([(x1, y1 - 26), (x1 - 20, y1 + 14), (x1 + 20, y1 + 14)], fill=(20, 140, 60))
    for x, y in [(280, 110), (690, 80), (1090, 120), (1300, 220)]:
        d.rectangle([x - 28, y - 28, x + 28, y + 28], fill=(20, 140, 60), outline=(255, 255, 255), width=5)
        d.rectangle([x - 8, y - 14, x + 8, y + 14], fill=(255, 255, 255))
    for x, y in [(430, 560), (820, 560)]:  # sirens
        d.ellipse([x - 16, y - 16, x + 16, y + 16], fill=(220, 40, 40))
    d.rectangle([40, 40, 330, 200], fill=(255, 255, 255), outline=(80, 80, 80), width=3)
    d.rectangle([60, 62, 100, 92], fill=(20, 140, 60))
    d.rectangle([60, 110, 100, 140], fill=(250, 205, 200))
    d.ellipse([64, 152, 96, 184], fill=(220, 40, 40))
    for i, y in enumerate((77, 125, 168)):  # legend "labels" as grey strokes
        d.rectangle([120, y - 6, 300 - i * 30, y + 6], fill=(110, 110, 110))
    return img


# --------------------------------------------------------------------------- common blocks


class Styles:
    def __init__(self, body, h1, h2, bullet, sub, caption, cell, head, note, head_bg="#e6e6e6"):
        self.head_bg = head_bg
        self.body, self.h1, self.h2 = body, h1, h2
        self.bullet, self.sub = bullet, sub
        self.caption, self.cell, self.head, self.note = caption, cell, head, note


def blocks_to_flowables(blocks, st: Styles, width, *, grid=True, table_caption_above=True):
    out = []
    for b in blocks:
        kind = b["type"]
        if kind == "heading":
            sty = st.h1 if b["level"] == 1 else st.h2
            out += [CondPageBreak(sty.leading * 4), Paragraph(rich(b["text"]), sty)]
        elif kind == "p":
            out.append(Paragraph(rich(b["text"]), st.body))
        elif kind == "bullets":
            for item in b["items"]:
                text, sub = (item, []) if isinstance(item, str) else (item["text"], item.get("sub", []))
                out.append(Paragraph(rich(text), st.bullet, bulletText=b.get("marker") or None))
                for s in sub:
                    out.append(Paragraph(rich(s), st.sub, bulletText="-"))
        elif kind == "qa":
            for q, a in b["items"]:
                out.append(Paragraph(rich("Q. " + q), st.h2))
                out.append(Paragraph(rich("A. " + a), st.bullet))
        elif kind == "table":
            parts = []
            t = table(b["rows"], width, b["widths"], st.head, st.cell, grid=grid, head_bg=st.head_bg)
            cap = Paragraph(rich(b["caption"]), st.caption) if b.get("caption") else None
            if cap and table_caption_above:
                parts.append(cap)
            parts.append(t)
            if b.get("note"):
                parts.append(Paragraph(rich(b["note"]), st.note))
            out += [Spacer(1, 4), KeepTogether(parts), Spacer(1, 10)]
        elif kind == "figure":
            out += [
                Spacer(1, 4),
                KeepTogether([bar_chart(b["chart"], width), Paragraph(rich(b["caption"]), st.caption)]),
                Spacer(1, 4),
            ]
        elif kind == "image":
            img = scan_image() if b["image"] == "scan" else map_image()
            h = width * img.size[1] / img.size[0]
            out.append(Image(png(img), width, h))
        elif kind == "pagebreak":
            out.append(PageBreak())
        else:
            raise ValueError(f"unknown block type {kind!r}")
    return out


def meta_kwargs(spec):
    m = spec.get("metadata", {})
    return {
        "title": m.get("title", ""),
        "author": m.get("author", ""),
        "creator": m.get("creator", ""),
        "subject": "",
        "keywords": "",
        "invariant": 1,
    }


# --------------------------------------------------------------------------- paper


def typeset_paper(spec, path):
    page_w, page_h = A4
    margin_x, margin_top, margin_bottom, gap = 52, 64, 58, 18
    col_w = (page_w - 2 * margin_x - gap) / 2
    full_w = page_w - 2 * margin_x
    body_top = page_h - margin_top
    body_h = body_top - margin_bottom
    j = spec["journal"]

    body = style("body", size=9.6, leading=14.8, firstLineIndent=9.6)
    h1 = style("h1", SANS, 10.5, 15, spaceBefore=9, spaceAfter=4, align=TA_LEFT)
    h2 = style("h2", SANS, 9.5, 14, spaceBefore=5, spaceAfter=2, align=TA_LEFT)
    caption = style("cap", size=8.2, leading=11.5, spaceBefore=3, spaceAfter=3)
    cell = style("cell", size=7.6, leading=9.5, align=TA_CENTER)
    head = style("head", SANS, 7.4, 9.5, align=TA_CENTER)
    note = style("note", size=7.4, leading=10, spaceBefore=2)
    fn_style = style("fn", size=7.3, leading=9.6)
    bio = style("bio", size=8.2, leading=12, spaceAfter=6)
    ack = style("ack", size=8.6, leading=13)
    ref = style("ref", size=8, leading=11.2, leftIndent=13, firstLineIndent=-13, spaceAfter=1.5)
    st = Styles(body, h1, h2, body, body, caption, cell, head, note)

    def title_block():
        return [
            Paragraph(rich(spec["title"]), style("t", SANS, 16.5, 23, align=TA_CENTER, spaceAfter=5)),
            Paragraph(rich(spec["title_en"]), style("te", SERIF, 10.5, 14, cjk=False, align=TA_CENTER, spaceAfter=9)),
            Paragraph(rich(spec["authors"]), style("au", SANS, 10.5, 15, align=TA_CENTER, spaceAfter=2)),
            Paragraph(rich(spec["affiliations"]), style("af", SERIF, 8.5, 12, align=TA_CENTER, spaceAfter=10)),
            Paragraph("요 약", style("ah", SANS, 9.5, 13, align=TA_CENTER, spaceAfter=3)),
            Paragraph(
                rich(spec["abstract_ko"]),
                style("ab", SERIF, 8.8, 13.2, leftIndent=24, rightIndent=24, firstLineIndent=8.8),
            ),
            Paragraph(
                rich("키워드: " + spec["keywords_ko"]),
                style("kw", SERIF, 8.5, 12, leftIndent=24, rightIndent=24, spaceBefore=3, spaceAfter=8),
            ),
            Paragraph("Abstract", style("eh", SANS, 9.5, 13, align=TA_CENTER, spaceAfter=3)),
            Paragraph(
                rich(spec["abstract_en"]), style("ae", SERIF, 8.6, 12.4, cjk=False, leftIndent=24, rightIndent=24)
            ),
            Paragraph(
                rich("Keywords: " + spec["keywords_en"]),
                style("ke", SERIF, 8.5, 12, cjk=False, leftIndent=24, rightIndent=24, spaceBefore=3),
            ),
        ]

    top_h = 12 + sum(f.wrap(full_w, page_h)[1] + f.getSpaceBefore() + f.getSpaceAfter() for f in title_block())
    first_col_h = body_h - top_h - 8

    def header(canv, doc):
        n = doc.page
        printed = j["first_page"] + n - 1
        canv.saveState()
        canv.setFont(SERIF, 8)
        y = page_h - 38
        if n == 1:
            canv.drawString(margin_x, y, j["name"])
            canv.drawRightString(page_w - margin_x, y, j["name_en"])
        elif n % 2 == 0:
            canv.drawString(margin_x, y, str(printed))
            canv.drawRightString(page_w - margin_x, y, j["name"])
        else:
            canv.drawString(margin_x, y, j["short_title"])
            canv.drawRightString(page_w - margin_x, y, str(printed))
        canv.setLineWidth(0.6)
        canv.line(margin_x, y - 5, page_w - margin_x, y - 5)
        canv.restoreState()

    def footer(canv, doc):
        doc.draw_notes(canv)
        if doc.page == 1:
            canv.saveState()
            canv.setFont(SERIF, 8)
            canv.drawCentredString(page_w / 2, 32, str(j["first_page"]))
            canv.restoreState()

    def make_doc(plan):
        doc = NotedDoc(
            str(path),
            notes=notes,
            note_style=fn_style,
            plan=plan,
            pagesize=A4,
            leftMargin=margin_x,
            rightMargin=margin_x,
            topMargin=margin_top,
            bottomMargin=margin_bottom,
            **meta_kwargs(spec),
        )

        def on_page(c, d):
            d.reserve()
            header(c, d)

        first = PageTemplate(
            "first",
            [
                frame(margin_x, body_top - top_h, full_w, top_h, "top"),
                frame(margin_x, margin_bottom, col_w, first_col_h, "left"),
                frame(margin_x + col_w + gap, margin_bottom, col_w, first_col_h, "right"),
            ],
            onPage=on_page,
            onPageEnd=footer,
            autoNextPageTemplate="later",
        )
        later = PageTemplate(
            "later",
            [
                frame(margin_x, margin_bottom, col_w, body_h, "left"),
                frame(margin_x + col_w + gap, margin_bottom, col_w, body_h, "right"),
            ],
            onPage=on_page,
            onPageEnd=footer,
        )
        doc.addPageTemplates([first, later])
        return doc

    notes = dict(spec["footnotes"])
    fixed_keys = []
    for i, text in enumerate(spec.get("first_page_notes", [])):
        notes[f"@{i}"] = text
        fixed_keys.append(f"@{i}")

    def story():
        s = [*title_block(), FrameBreak()]
        s += blocks_to_flowables(spec["body"], st, col_w, grid=False)
        if spec.get("acknowledgement"):
            s += [Spacer(1, 4), Paragraph(rich(spec["acknowledgement"]), ack)]
        s += [CondPageBreak(60), Paragraph(rich(spec["references_heading"]), h1)]
        s += [Paragraph(rich(r), ref) for r in spec["references"]]
        if spec.get("author_bios"):
            s += [CondPageBreak(80), Paragraph(rich(spec["author_bios_heading"]), h1)]
            s += [Paragraph(rich(b), bio) for b in spec["author_bios"]]
        return s

    return build_noted(make_doc, story, {(1, "left"): fixed_keys})


# --------------------------------------------------------------------------- report


def typeset_report(spec, path):
    page_w, page_h = A4
    mx, mtop, mbottom = 68, 78, 70
    width = page_w - 2 * mx
    body = style("body", size=10.5, leading=17.5, firstLineIndent=10.5, spaceAfter=5)
    h1 = style("h1", SANS, 15, 21, spaceBefore=14, spaceAfter=7, align=TA_LEFT)
    h2 = style("h2", SANS, 12, 17, spaceBefore=8, spaceAfter=4, align=TA_LEFT)
    bullet = style("bl", size=10.5, leading=17, leftIndent=20, bulletIndent=5, bulletFontName=SERIF, spaceAfter=2)
    sub = style("sb", size=10, leading=16, leftIndent=34, bulletIndent=24, bulletFontName=SERIF, spaceAfter=1)
    caption = style("cap", SANS, 10, 14, align=TA_LEFT, spaceAfter=4)
    cell = style("cell", size=9, leading=12, align=TA_CENTER)
    head = style("head", SANS, 9, 12, align=TA_CENTER)
    note = style("note", size=8.5, leading=12, spaceBefore=3)
    fn_style = style("fn", size=8.5, leading=12)
    st = Styles(body, h1, h2, bullet, sub, caption, cell, head, note)
    c = spec["cover"]

    def header(canv, doc):
        canv.saveState()
        canv.setFont(SANS, 8.5)
        y = page_h - 48
        canv.drawString(mx, y, spec["running_header"])
        canv.drawRightString(page_w - mx, y, spec["running_header_right"])
        canv.setLineWidth(0.7)
        canv.line(mx, y - 6, page_w - mx, y - 6)
        canv.restoreState()

    def footer(canv, doc):
        doc.draw_notes(canv)
        canv.saveState()
        canv.setFont(SERIF, 9.5)
        canv.drawCentredString(page_w / 2, 38, f"- {doc.page} -")
        canv.restoreState()

    def cover_page(canv, doc):
        canv.saveState()
        canv.setFillColor(colors.HexColor("#1f4e79"))
        canv.rect(0, page_h - 250, page_w, 16, stroke=0, fill=1)
        canv.rect(0, 120, page_w, 6, stroke=0, fill=1)
        canv.restoreState()

    def make_doc(plan):
        doc = NotedDoc(
            str(path), notes=spec["footnotes"], note_style=fn_style, plan=plan, pagesize=A4, **meta_kwargs(spec)
        )
        cover = PageTemplate(
            "cover",
            [frame(mx, mbottom, width, page_h - mtop - mbottom, "cover")],
            onPage=lambda cv, d: (d.reserve(), cover_page(cv, d)),
            autoNextPageTemplate="body",
        )
        page = PageTemplate(
            "body",
            [frame(mx, mbottom, width, page_h - mtop - mbottom, "body")],
            onPage=lambda cv, d: (d.reserve(), header(cv, d)),
            onPageEnd=footer,
        )
        doc.addPageTemplates([cover, page])
        return doc

    def story():
        s = [
            Spacer(1, 230),
            Paragraph(rich(c["title"]), style("ct", SANS, 26, 36, align=TA_CENTER, spaceAfter=18)),
            Paragraph(rich(c["subtitle"]), style("cs", SANS, 15, 22, align=TA_CENTER)),
            Spacer(1, 250),
            Paragraph(rich(c["date"]), style("cd", SANS, 14, 20, align=TA_CENTER, spaceAfter=8)),
            Paragraph(rich(c["org"]), style("co", SANS, 16, 22, align=TA_CENTER)),
            PageBreak(),
        ]
        return s + blocks_to_flowables(spec["body"], st, width, grid=True)

    return build_noted(make_doc, story, {})


# --------------------------------------------------------------------------- slides


def typeset_slides(spec, path):
    page_w, page_h = landscape(A4)
    mx, top_bar = 48, 78
    width = page_w - 2 * mx
    body = style("body", SANS, 15, 22, cjk=False, align=TA_LEFT)
    bullet = style(
        "bl",
        SANS,
        15,
        22,
        cjk=False,
        align=TA_LEFT,
        leftIndent=22,
        bulletIndent=2,
        bulletFontName=SANS,
        bulletFontSize=11,
        spaceAfter=7,
    )
    sub = style("sb", SANS, 13.5, 20, cjk=False, align=TA_LEFT, leftIndent=42, bulletIndent=26, spaceAfter=3)
    qa_q = style(
        "q", SANS, 15, 21, cjk=False, align=TA_LEFT, spaceBefore=6, spaceAfter=1, textColor=colors.HexColor("#1f4e79")
    )
    qa_a = style("a", SERIF, 14, 20, cjk=False, align=TA_LEFT, leftIndent=22, spaceAfter=3)
    title = style("title", SANS, 24, 30, cjk=False, align=TA_LEFT, textColor=colors.white)
    cell = style("cell", SANS, 13, 18, cjk=False, align=TA_CENTER)
    head = style("head", SANS, 13, 18, cjk=False, align=TA_CENTER, textColor=colors.white)
    st = Styles(body, title, qa_q, bullet, sub, body, cell, head, body, head_bg="#1f4e79")
    st_qa = Styles(body, title, qa_q, qa_a, sub, body, cell, head, body, head_bg="#1f4e79")
    n_slides = len(spec["slides"])

    def chrome(canv, doc):
        canv.saveState()
        canv.setFillColor(colors.HexColor("#1f4e79"))
        canv.rect(0, page_h - top_bar, page_w, top_bar, stroke=0, fill=1)
        canv.setFillColor(colors.HexColor("#2e8b57"))
        canv.rect(0, page_h - top_bar - 5, page_w, 5, stroke=0, fill=1)
        canv.setFillColor(colors.HexColor("#555555"))
        canv.setFont(SANS, 9.5)
        canv.drawString(mx, 22, spec["footer"])
        canv.drawRightString(page_w - mx, 22, f"{doc.page} / {n_slides}")
        canv.setStrokeColor(colors.HexColor("#bbbbbb"))
        canv.line(mx, 36, page_w - mx, 36)
        canv.restoreState()

    def title_chrome(canv, doc):
        canv.saveState()
        canv.setFillColor(colors.HexColor("#1f4e79"))
        canv.rect(0, 0, page_w, page_h, stroke=0, fill=1)
        canv.setFillColor(colors.HexColor("#2e8b57"))
        canv.rect(0, page_h * 0.42, page_w, 6, stroke=0, fill=1)
        canv.restoreState()

    doc = BaseDocTemplate(str(path), pagesize=(page_w, page_h), **meta_kwargs(spec))
    doc.addPageTemplates(
        [
            PageTemplate("title", [frame(mx, 60, width, page_h - 120, "title")], onPage=title_chrome),
            PageTemplate(
                "slide",
                [
                    frame(mx, page_h - top_bar + 4, width, top_bar - 26, "head"),
                    frame(mx, 48, width, page_h - top_bar - 5 - 18 - 48, "body"),
                ],
                onPage=chrome,
            ),
            PageTemplate("image", [frame(0, 0, page_w, page_h, "image")]),
        ]
    )
    s = []
    for i, sl in enumerate(spec["slides"]):
        kind = sl.get("kind", "normal")
        if i:
            s += [NextPageTemplate({"title": "title", "image": "image"}.get(kind, "slide")), PageBreak()]
        if kind == "title":
            white = {"textColor": colors.white, "cjk": False, "align": TA_CENTER}
            s += [
                Spacer(1, 90),
                Paragraph(rich(sl["title"]), style("tt", SANS, 36, 46, spaceAfter=16, **white)),
                Paragraph(rich(sl["subtitle"]), style("ts", SANS, 19, 26, spaceAfter=70, **white)),
            ]
            s += [Paragraph(rich(x), style("tl", SANS, 14, 22, **white)) for x in sl["lines"]]
        elif kind == "image":
            img = map_image()
            s.append(Image(png(img), page_w, page_h))
        else:
            s += [Paragraph(rich(sl["title"]), title), FrameBreak()]
            has_qa = any(b["type"] == "qa" for b in sl["blocks"])
            s += blocks_to_flowables(sl["blocks"], st_qa if has_qa else st, width, grid=True)
    doc.build(s)
    return doc


# --------------------------------------------------------------------------- main

LAYOUTS = {"paper": typeset_paper, "report": typeset_report, "slides": typeset_slides}


def content_files():
    return sorted((HERE / "content").glob("*.json"))


def typeset_all(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    for src in content_files():
        spec = json.loads(src.read_text(encoding="utf-8"))
        out = outdir / spec["file"]
        LAYOUTS[spec["layout"]](spec, out)
        made.append(out)
    return made


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    for p in typeset_all(Path(argv[1])):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
