"""The PDF report, for a court bundle: a cover page, one summary page per prompt, each finding on its own
page(s), "page x of y" and the section (the finding's id) on every page.

Made with reportlab (pure Python, so the command line writes a PDF without Qt, which only ``inspector.gui`` may
import). It shows what the HTML shows, from the same :class:`~inspector.report.data.ReportData`: per finding,
the generation and the image the verdict is about side by side at one scale with their numbers on the same
page, the four nearest with distances and heatmaps (drawn from the compared arrays) with legends, the label
history with full hashes, the reproductions, and the provenance in full.

Text goes through :func:`para`, which escapes reportlab's markup and writes a character the embedded font has
no glyph for as ``[U+XXXX]``, so that no character of a prompt or note is silently lost.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as pdfcanvas
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.flowables import BalancedColumns

from inspector import metrics
from inspector.findings import LABELS, UNLABELED
from inspector.report.data import (
    HEATMAP_VMAX,
    LABEL_WORDS,
    PIXEL_HASH_WORDS,
    TILE_VMAX,
    FindingView,
    Picture,
    PromptView,
    ReportData,
    index_rows,
    label_words,
    legend_picture,
)
from inspector.roles import describe_index, role_words

PAGE_W, PAGE_H = A4
MARGIN = 15 * mm
TOP = 20 * mm
BOTTOM = 18 * mm
WIDTH = PAGE_W - 2 * MARGIN
#: Side of each of the two images compared on a finding's first page, in points (1/72 inch).
PAIR_SIDE = 190
THUMB_SIDE = 64
RED = colors.HexColor("#aa0000")
GREEN = colors.HexColor("#226644")

_FONT_PLACES = (
    Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"), Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"), Path("/Library/Fonts"),
)


@cache
def fonts() -> tuple[str, str, str, frozenset[int]]:
    """(regular, bold, mono) font names, registered with reportlab, and the code points the regular font has.

    DejaVu Sans where the system has it (wide script coverage), else Bitstream Vera, which reportlab ships; both
    are embedded in the PDF. Hashes are set in Courier (ASCII only)."""
    import reportlab

    candidates = [(p / "DejaVuSans.ttf", p / "DejaVuSans-Bold.ttf") for p in _FONT_PLACES]
    shipped = Path(reportlab.__file__).parent / "fonts"
    candidates.append((shipped / "Vera.ttf", shipped / "VeraBd.ttf"))
    for regular, bold in candidates:
        if regular.is_file() and bold.is_file():
            try:
                body = TTFont("InspectorBody", str(regular))
                strong = TTFont("InspectorBold", str(bold))
            except Exception:  # noqa: BLE001 - a damaged system font: try the next
                continue
            pdfmetrics.registerFont(body)
            pdfmetrics.registerFont(strong)
            pdfmetrics.registerFontFamily("InspectorBody", normal="InspectorBody", bold="InspectorBold",
                                          italic="InspectorBody", boldItalic="InspectorBold")
            return "InspectorBody", "InspectorBold", "Courier", frozenset(body.face.charToGlyph)
    return "Helvetica", "Helvetica-Bold", "Courier", frozenset(range(32, 127))


def safe_text(value: Any) -> str:
    """``value`` as reportlab paragraph text: markup escaped, characters without a glyph as ``[U+XXXX]``."""
    glyphs = fonts()[3]
    text = "" if value is None else str(value)
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append(" ")
        elif ord(ch) in glyphs or ch == " ":
            out.append(escape(ch))
        else:
            out.append(f"[U+{ord(ch):04X}]")
    return "".join(out)


@cache
def styles() -> dict[str, ParagraphStyle]:
    body, bold, mono, _ = fonts()
    base = ParagraphStyle("body", fontName=body, fontSize=8.5, leading=10.5)
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9),
        "tiny": ParagraphStyle("tiny", parent=base, fontSize=6.5, leading=7.8),
        "bold": ParagraphStyle("bold", parent=base, fontName=bold),
        "title": ParagraphStyle("title", parent=base, fontName=bold, fontSize=17, leading=21, spaceAfter=6),
        "h2": ParagraphStyle("h2", parent=base, fontName=bold, fontSize=12.5, leading=15, spaceAfter=4),
        "h3": ParagraphStyle("h3", parent=base, fontName=bold, fontSize=9.5, leading=12, spaceBefore=6,
                             spaceAfter=2),
        "mono": ParagraphStyle("mono", parent=base, fontName=mono, fontSize=7.2, leading=8.6),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7, leading=8.3),
        "provenance": ParagraphStyle("provenance", parent=base, fontSize=6.3, leading=7.1, spaceAfter=0.3),
        "monosmall": ParagraphStyle("monosmall", parent=base, fontName=mono, fontSize=6.4, leading=7.6),
        "alarm": ParagraphStyle("alarm", parent=base, fontName=bold, fontSize=11, leading=14, textColor=RED),
        "ok": ParagraphStyle("ok", parent=base, fontName=bold, fontSize=10, leading=13, textColor=GREEN),
    }


def para(value: Any, style: str = "body", bold_prefix: str | None = None) -> Paragraph:
    """A paragraph of plain text (never markup); ``bold_prefix`` is set in bold before it."""
    text = safe_text(value)
    if bold_prefix:
        text = f"<b>{safe_text(bold_prefix)}</b> {text}"
    return Paragraph(text, styles()[style])


def mono(value: Any, small: bool = False) -> Paragraph:
    return Paragraph(safe_text(value), styles()["monosmall" if small else "mono"])


def _title_row() -> list[tuple]:
    """Table style commands that make row 0 a heading spanning the table (it repeats on a continued page)."""
    return [("SPAN", (0, 0), (-1, 0)), ("LEFTPADDING", (0, 0), (-1, 0), 0), ("FONTNAME", (0, 0), (-1, 0), fonts()[1]),
            ("FONTSIZE", (0, 0), (-1, 0), 9.5), ("TOPPADDING", (0, 0), (-1, 0), 7), ("BOTTOMPADDING", (0, 0), (-1, 0), 3)]


class SectionMark(Flowable):
    """Names the section the following pages belong to ("Finding 3"): the page header and footer say it."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.width = self.height = 0

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return 0, 0

    def draw(self) -> None:
        self.canv._inspector_section = self.text


class NumberedCanvas(pdfcanvas.Canvas):
    """Writes "page x of y" and the section on every page, once the number of pages is known."""

    def __init__(self, *args: Any, title_line: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        self._inspector_section = ""
        self._title_line = title_line

    def showPage(self) -> None:  # noqa: N802 - reportlab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for number, state in enumerate(self._pages, 1):
            self.__dict__.update(state)
            self._decorate(number, total)
            super().showPage()
        super().save()

    def _decorate(self, number: int, total: int) -> None:
        body, bold, _, _ = fonts()
        section = self._inspector_section or "Cover"
        self.saveState()
        self.setStrokeColor(colors.grey)
        self.setLineWidth(0.5)
        self.line(MARGIN, PAGE_H - TOP + 6, PAGE_W - MARGIN, PAGE_H - TOP + 6)
        self.line(MARGIN, BOTTOM - 6, PAGE_W - MARGIN, BOTTOM - 6)
        self.setFont(body, 8)
        self.drawString(MARGIN, PAGE_H - TOP + 10, safe_plain(self._title_line, 95))
        self.setFont(bold, 9)
        self.drawRightString(PAGE_W - MARGIN, PAGE_H - TOP + 10, section)
        self.setFont(body, 8)
        self.drawString(MARGIN, BOTTOM - 16, section)
        self.drawRightString(PAGE_W - MARGIN, BOTTOM - 16, f"page {number} of {total}")
        self.restoreState()


def safe_plain(text: str, width: int) -> str:
    """Text for a canvas string (no markup there): characters without a glyph as ``[U+XXXX]``, cut to width."""
    glyphs = fonts()[3]
    out = "".join(ch if ord(ch) in glyphs or ch == " " else f"[U+{ord(ch):04X}]" for ch in str(text))
    out = " ".join(out.split())
    return out if len(out) <= width else out[: width - 1] + "\u2026"


class _Pictures:
    """Turns :class:`Picture` objects into reportlab images, listing each one embedded (for the manifest)."""

    def __init__(self, embedded: list[Picture]):
        self.embedded = embedded

    def image(self, picture: Picture, width: float, height: float | None = None) -> Image:
        self.embedded.append(picture)
        w, h = picture.size
        height = height if height is not None else width * h / max(1, w)
        return Image(io.BytesIO(picture.png), width=width, height=height)


def _facts(rows: Iterable[tuple[str, Any]], key_width: float = 120, mono_keys: Sequence[str] = (),
           style: str = "small", width: float = WIDTH) -> Table:
    """A two-column table of facts: names in bold on the left, values (hashes in Courier) on the right."""
    data = []
    for name, value in rows:
        cell = mono(value) if any(k in name for k in mono_keys) else (
            value if isinstance(value, (Flowable, list)) else para(value, style))
        data.append([para("", style, bold_prefix=name), cell])
    table = Table(data, colWidths=[key_width, width - key_width], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f0f0f0")),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]))
    return table


def _banner(paragraphs: list[Paragraph], colour: colors.Color, fill: str) -> Table:
    table = Table([[paragraphs]], colWidths=[WIDTH])
    table.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.5, colour),
                               ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(fill)),
                               ("LEFTPADDING", (0, 0), (-1, -1), 6), ("TOPPADDING", (0, 0), (-1, -1), 4),
                               ("BOTTOMPADDING", (0, 0), (-1, -1), 5)]))
    return table


# --- the pages --------------------------------------------------------------------------------------------------


def _cover(data: ReportData) -> list[Flowable]:
    story: list[Flowable] = [SectionMark("Cover"), para(data.title, "title")]
    if data.verified:
        story.append(_banner([para(f"Integrity: verified. {data.check.summary()}.", "ok")], GREEN, "#eeffee"))
    else:
        lines = [para(f"Integrity: {data.not_verified_text()}.", "alarm"),
                 para("This casebook was changed outside the inspector or is damaged; treat the findings named"
                      " below with care.", "body")]
        lines += [para(str(p), "small") for p in data.check.problems[:40]]
        if len(data.check.problems) > 40:
            lines.append(para(f"... and {len(data.check.problems) - 40} more problems (casebook verify lists"
                              " them all)", "small"))
        story.append(_banner(lines, RED, "#ffeeee"))
    story += [Spacer(1, 6), _facts(data.cover_rows(), mono_keys=("sha256", "head"))]
    role = data.role
    counts = [(label_words(k, role) if role else LABEL_WORDS[k].split(":")[0], str(data.counts[k]))
              for k in (*LABELS, UNLABELED)]
    story += [para("Findings per label", "h3"), _facts(counts, key_width=300)]
    if data.indexes:
        story.append(para("What was searched", "h3"))
        for identity in data.indexes:
            line = describe_index(identity) if identity.get("source") else role_words(identity.get("role")).role_name
            story += [para(line, "small"), _facts(index_rows(identity), mono_keys=("sha256",)), Spacer(1, 3)]
    story += [para("Versions that wrote this report", "h3"), _facts(data.versions.items())]
    for versions, ids in data.recorded_versions:
        made = ", ".join(f"{k} {v}" for k, v in versions.items())
        story.append(para(f"The generations of findings {', '.join(map(str, ids))} were made with: {made}.",
                          "small"))
    story.append(PageBreak())
    return story


def _prompt_page(p: PromptView, number: int, total: int, pictures: _Pictures) -> list[Flowable]:
    story: list[Flowable] = [SectionMark(f"Prompt summary {number} of {total}"),
                             para(f"Prompt {number} of {total}", "h2"), para(p.prompt, "body", "Prompt:")]
    generated = str(p.generated) + (
        f" (counted by the runs on record: {', '.join(str(r.id) for r in p.runs)})" if p.generated_from_runs
        else " (the findings recorded; no run on record says how many were generated)")
    labels = ", ".join(f"{n} {k}" for k, n in p.labels.items() if n) or "none"
    story.append(_facts([("Generated", generated), ("Suggested near copies", p.suggested["near copies"]),
                         ("Suggested likeness", p.suggested["likeness"]), ("Suggested novel", p.suggested["novel"]),
                         ("Labeled in this report", labels),
                         ("Largest clique of near-identical generations", p.clique or "(not computed)"),
                         ("Wen score", p.wen or "(not computed)"),
                         ("Findings", ", ".join(map(str, p.finding_ids)))], key_width=190))
    if p.copied is not None:
        n = p.copied.neighbour
        head = "The copied image" if p.near_copy else "The nearest image (not a near copy)"
        story.append(para(f"{head}: nearest {n.rank} of finding {p.copied_finding}", "h3"))
        facts = _facts([("Distance", p.copied.distance_lines[0]), ("Caption", n.caption), ("File", n.source),
                        ("URL", n.url or "(not recorded)"), ("Licence", n.licence or "(not recorded)"),
                        ("Copies", p.copied.words.times(n.duplicate_count)),
                        ("Image sha256", n.image_sha256 or "(not recorded)")], key_width=60,
                       mono_keys=("sha256",), width=WIDTH - 208)
        picture = pictures.image(p.copied_picture, 200) if p.copied_picture else para("(no picture stored)")
        row = Table([[picture, facts]], colWidths=[208, WIDTH - 208], hAlign="LEFT")
        row.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
        story.append(row)
    story.append(PageBreak())
    return story


def _finding_pages(v: FindingView, pictures: _Pictures, legends: dict[str, Picture]) -> list[Flowable]:
    f = v.finding
    story: list[Flowable] = [SectionMark(f"Finding {v.id}")]
    first: list[Flowable] = [para(f"Finding {v.id}: {v.label_text}", "h2")]
    if v.problems:
        first.append(_banner([para(f"NOT verified: finding {v.id} was changed outside the inspector or is"
                                   " damaged.", "alarm")] + [para(r, "small") for r in v.problems], RED, "#ffeeee"))
    verdict = v.verdict
    if v.pair and verdict is not None:
        n = verdict.neighbour
        how = ("both at the same scale, exactly as compared" if v.pair_exact else
               "both reduced to the stored thumbnail's size (recorded before the compared pixels were kept)")
        images = Table([[pictures.image(v.pair[0], PAIR_SIDE, PAIR_SIDE), pictures.image(v.pair[1], PAIR_SIDE,
                                                                                         PAIR_SIDE)],
                        [para(f"{v.image_title if v.is_query else f'Generation, seed {f.seed}'}: {v.pair_side} x"
                              f" {v.pair_side} px", "small"),
                         para(f"Nearest {n.rank}: {verdict.words.image} {n.item_id}, {v.pair_side} x"
                              f" {v.pair_side} px", "small")]],
                       colWidths=[PAIR_SIDE + 8, PAIR_SIDE + 8], hAlign="LEFT")
        images.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        side: list[Flowable] = [para(how, "tiny")]
        if verdict.tiles is not None:
            side += [para("Tile l2, 4 x 4 grid (worst tile in red):", "tiny"),
                     pictures.image(verdict.tiles, WIDTH - 2 * (PAIR_SIDE + 8) - 4),
                     pictures.image(legends["tiles"], 60)]
        top = Table([[images, side]], colWidths=[2 * (PAIR_SIDE + 8), WIDTH - 2 * (PAIR_SIDE + 8)], hAlign="LEFT")
        top.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        first.append(top)
        numbers = [("Distances", "; ".join(verdict.distance_lines)), ("Caption", n.caption), ("File", n.source),
                   ("URL" if verdict.web_url or not n.url else "Origin", n.url or "(not recorded)"),
                   ("Copies", verdict.words.times(n.duplicate_count)),
                   ("Licence", n.licence or "(not recorded)")]
        first.append(_facts(numbers, key_width=60))
    elif verdict is None:
        first.append(para("No neighbours were recorded with this finding.", "body"))
    story.append(KeepTogether(first))
    facts: list[tuple[str, Any]] = [
        *v.subject_facts(), ("Index searched", v.index_text), ("Suggested by the inspector", f"{v.suggestion} (a suggestion, not a label)"),
    ]
    if v.margin_text:
        facts.append(("Distance to the extraction line", ("Borderline: " if v.borderline else "") + v.margin_text))
    facts += [("Label", v.label_text), ("Reviewer", f.reviewer or "(none)"), ("Notes", f.notes or "(none)"),
              ("Recorded", f.created_at), ("Model", v.model_id or "(not recorded)"),
              ("Model weights sha256", v.model_sha256 or "(not recorded)"),
              ("Query image sha256 (as stored, PNG)" if v.is_query else "Generation sha256", f.image_sha256),
              ("Pixel hash (raw RGB) sha256", v.pixel_hash)]
    if v.recorded_pixel_hash:
        same = " (the same)" if v.recorded_pixel_hash == v.pixel_hash else ""
        facts.append(("Pixel hash in the record", [mono(v.recorded_pixel_hash),
                                                   para(f"rule: {v.recorded_pixel_rule}{same}", "tiny")]))
    story += [Spacer(1, 4), _facts(facts, mono_keys=("sha256",))]
    story += _neighbours(v, pictures, legends)
    story += _history(v)
    story += _provenance(v)
    story.append(PageBreak())
    return story


def _neighbours(v: FindingView, pictures: _Pictures, legends: dict[str, Picture]) -> list[Flowable]:
    words = v.words
    rows = [[safe_plain(f"The four nearest {words.images}", 200), "", ""],
            [para("image", "tiny"), para("where it differs", "tiny"), para("distances and origin", "tiny")]]
    for nv in v.neighbours:
        n = nv.neighbour
        thumb = pictures.image(nv.thumbnail, THUMB_SIDE, THUMB_SIDE) if nv.thumbnail else para("(no thumbnail)",
                                                                                              "tiny")
        heat: Any = para(nv.heatmap_problem or "(no heatmap)", "tiny")
        if nv.difference is not None:
            heat = [pictures.image(nv.difference, THUMB_SIDE, THUMB_SIDE)]
            if not nv.heatmap_exact:  # exact ones say their size in the distances ("compared at 32 x 32 px")
                heat.append(para("from thumbnails (older finding): close to, not equal to, the distances", "tiny"))
        about = " (the suggestion is about this image)" if nv.is_verdict else ""
        text = [para(f"Nearest {n.rank}{about}: {nv.words.image} {n.item_id} of index {n.index_id or '(unnamed)'}",
                     "cell"),
                para("; ".join(nv.distance_lines), "cell"),
                para(f"caption: {n.caption}" + (f" (from {n.caption_source})" if nv.caption_from_file_name else "")
                     + f"; {nv.words.times(n.duplicate_count)}" + (f"; licence: {n.licence}" if n.licence else ""),
                     "cell"),
                para(f"file: {n.source}" + (f"; {nv.origin}" if nv.origin else ""), "cell")]
        if n.image_sha256:
            text.append(mono(f"sha256 {n.image_sha256}", small=True))
        rows.append([thumb, heat, text])
    if len(rows) == 2:
        return [para(f"The nearest {words.images}", "h3"), para("(no neighbours recorded)")]
    # The heading is the table's first row, so that it moves with the rows (the table splits between rows:
    # each image stays beside its numbers).
    table = Table(rows, colWidths=[THUMB_SIDE + 8, THUMB_SIDE + 12, WIDTH - 2 * THUMB_SIDE - 20], hAlign="LEFT",
                  repeatRows=2)
    table.setStyle(TableStyle([*_title_row(), ("GRID", (0, 1), (-1, -1), 0.4, colors.HexColor("#999999")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 1), (-1, 1), colors.HexColor("#f0f0f0"))]))
    legend = Table([[pictures.image(legends["difference"], 42),
                     para(f"Where they differ: mean absolute difference per pixel, dark blue 0 (the same) to yellow"
                          f" {HEATMAP_VMAX:.2f} or more (different), laid over the {words.image}. Ordered by tiled"
                          " l2, nearest first.", "tiny")]], colWidths=[50, WIDTH - 50], hAlign="LEFT")
    legend.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return [Spacer(1, 4), table, legend]


def _history(v: FindingView) -> list[Flowable]:
    out: list[Flowable] = []
    rows = [["Label history", "", "", "", "", ""],
            [para(h, "tiny") for h in ("event", "time (UTC)", "what", "label", "reviewer", "note")]]
    spans = []
    for e in v.history:
        what = e.action + (f": {e.detail}" if e.detail else "")
        note = e.event.note if e.event.action != "reproduce" else ""
        rows.append([para(e.id, "tiny"), para(e.event.created_at, "tiny"), para(what, "tiny"),
                     para(e.change, "tiny"), para(e.event.reviewer, "tiny"), para(note, "tiny")])
        rows.append(["", [mono(f"hash {e.event.hash}", small=True),
                          mono(f"previous {e.event.prev_hash}", small=True)], "", "", "", ""])
        spans.append(("SPAN", (1, len(rows) - 1), (5, len(rows) - 1)))
    table = Table(rows, colWidths=[34, 116, 104, 76, 66, WIDTH - 396], hAlign="LEFT", repeatRows=2)
    table.setStyle(TableStyle([*_title_row(),
                               ("GRID", (0, 1), (-1, -1), 0.4, colors.HexColor("#999999")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 1), (-1, 1), colors.HexColor("#f0f0f0")),
                               ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                               *spans]))
    out.append(table)
    out.append(para("Reproductions", "h3"))
    if not v.reproductions:
        out.append(para(f"Not reproduced yet: the Casebook tab's Reproduce or `inspector casebook reproduce FILE"
                        f" {v.id}` regenerates it and records the outcome here.", "small"))
    for r in v.reproductions:
        versions = ", ".join(f"{k} {val}" for k, val in (r.record.get("versions") or {}).items())
        out.append(para(f"Event {r.event_id}, {r.created_at}: {r.words}" + (f", by {r.reviewer}" if r.reviewer
                                                                            else "") + f"; {versions}", "cell"))
        if r.record.get("pixels_sha256"):
            out.append(mono(f"pixel hash of the regenerated image {r.record['pixels_sha256']}", small=True))
    return out


def _provenance(v: FindingView) -> list[Flowable]:
    """Every recorded setting, in two balanced columns of "key value" entries (a hash on its own line, whole),
    so that a long record takes half the height of a table."""
    title = para("Provenance: every recorded setting, in full", "h3")
    if not v.provenance:
        return [title, para("(none recorded)")]
    style = styles()["provenance"]
    entries: list[Flowable] = []
    for key, value in v.provenance:
        if _looks_like_hash(value):
            text = f"<b>{safe_text(key)}</b><br/><font name=\"{fonts()[2]}\" size=\"6\">{value}</font>"
        else:
            text = f"<b>{safe_text(key)}</b> {safe_text(value)}"
        entries.append(Paragraph(text, style))
    return [title, BalancedColumns(entries, nCols=2, innerPadding=10, topPadding=0, bottomPadding=0, endSlack=0.2)]


def _looks_like_hash(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _method() -> list[Flowable]:
    threshold = metrics.EXTRACTION_THRESHOLD
    return [SectionMark("How to read this report"), para("How to read this report", "h2"),
            para("Each finding is one generated image beside the four most similar indexed images. Distances follow"
                 " Carlini et al. 2023: tiled l2 is the largest pixel distance over a 4 x 4 grid of tiles, from 0"
                 f" (identical) to 1; at {threshold:.2f} or less the generation is a near copy. Both images are"
                 " compared at one square size, the smaller of the generation's and the index's, never enlarged;"
                 " the heatmaps are computed from the same two images as the distances."),
            Spacer(1, 4),
            para("The label is a person's judgement; the suggestion is the inspector's. Each change a person makes"
                 " (label, reviewer, notes) and each reproduction is an event in the label history, each event's"
                 " hash covering the one before it: `inspector casebook verify FILE` recomputes every finding's"
                 " label, reviewer and notes from its events."),
            Spacer(1, 4), para(PIXEL_HASH_WORDS), Spacer(1, 4),
            para("This report was sealed when it was written: beside it, FILE.manifest.json lists the sha256 of"
                 " this file and of each image in it, the casebook's sha256 and chain head and the filters used;"
                 " a signed report also has FILE.sig, an OpenSSH signature (ssh-keygen -Y verify -f"
                 " allowed_signers -I NAME -n file -s FILE.sig < FILE). `inspector report verify FILE` checks"
                 " both and names what changed.")]


def render_pdf(data: ReportData, stream: IO[bytes], embedded: list[Picture] | None = None) -> int:
    """Write the PDF report of ``data`` to a binary stream; return the number of findings. Each picture
    embedded is appended to ``embedded`` (for the manifest)."""
    pictures = _Pictures([] if embedded is None else embedded)
    legends = {"difference": legend_picture("difference", HEATMAP_VMAX, "legend: pixel difference"),
               "tiles": legend_picture("tile l2", TILE_VMAX, "legend: tile l2")}
    story = _cover(data)
    for i, p in enumerate(data.prompts, 1):
        story += _prompt_page(p, i, len(data.prompts), pictures)
    for view in data.findings():
        story += _finding_pages(view, pictures, legends)
    story += _method()
    title_line = "Memorization Inspector report" + (f" \u00b7 {data.options.matter}" if data.options.matter else "")
    doc = SimpleDocTemplate(stream, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=TOP,
                            bottomMargin=BOTTOM, title=data.title, author=data.options.author or "",
                            subject=data.options.matter or "", creator="Memorization Inspector "
                            + data.versions.get("inspector", ""),
                            invariant=False)
    doc.build(story, canvasmaker=lambda *a, **k: NumberedCanvas(*a, title_line=title_line, **k))
    return len(data.summaries)
