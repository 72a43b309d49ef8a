"""The artist's "check my work" result as one page: a self-contained HTML file or a one-page PDF.

The page is made from plain data (``inspector.artist_check.as_page``: file names, words and thumbnails as PNG
bytes without metadata), so it carries no local path: not the works' folder, not the index's, not the model's.
It goes through the report package's machinery: the autoescaped jinja2 environment (a title or a prompt is text,
never markup), reportlab with the report's fonts and :func:`~inspector.report.pdf.safe_text`, and files that
appear only when complete and never replace an existing one unless asked.
"""

from __future__ import annotations

import io
import os
from importlib import resources
from pathlib import Path
from typing import IO, Any

from inspector import __version__
from inspector.errors import UserError, write_failure
from inspector.fileio import write_part
from inspector.report.data import Picture
from inspector.report.files import exists_message, publish_all
from inspector.report.html import environment

TEMPLATE = "artist.html.j2"
FORMATS = ("html", "pdf")
#: Pictures per row of the PDF's "not reproduced" table before it is split into two side by side.
SPLIT_ABOVE = 14


def _uri(png: bytes | None, what: str) -> str:
    return Picture(png, what).data_uri if png else ""


def _works(page: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    works = [dict(w, work_uri=_uri(w.get("work_png"), "work"), generation_uri=_uri(w.get("generation_png"), "gen"))
             for w in page["works"]]
    return [w for w in works if w["reproduced"]], [w for w in works if not w["reproduced"]]


def render_artist_html(page: dict[str, Any], stream: IO[str]) -> None:
    """Write the page (``artist_check.as_page``) as one self-contained HTML document to ``stream``."""
    reproduced, others = _works(page)
    css = resources.files("inspector.report").joinpath("templates", "artist.css").read_text(encoding="utf-8")
    template = environment().get_template(TEMPLATE)
    for chunk in template.generate(page=page, reproduced=reproduced, others=others, css=css, version=__version__):
        stream.write(chunk)


def _sharp(png: bytes, side: float) -> bytes:
    """A small picture (the demo's 32 px generations) enlarged by whole pixels, so that the PDF viewer shows its
    pixels as they are instead of smoothing them into a blur; larger ones as they are."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(png)) as im:
        factor = int(2 * side // max(im.size))
        if factor < 2:
            return png
        big = im.convert("RGB").resize((im.width * factor, im.height * factor), PILImage.Resampling.NEAREST)
    out = io.BytesIO()
    big.save(out, format="PNG")
    return out.getvalue()


def render_artist_pdf(page: dict[str, Any], stream: IO[bytes]) -> None:
    """Write the page as a one-page A4 PDF to ``stream``: whatever the number of works, the content is shrunk
    to fit the page (reportlab's ``KeepInFrame``) rather than run onto a second one."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, KeepInFrame, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    from inspector.report.pdf import para, safe_text, styles

    margin = 12 * mm
    width, height = A4[0] - 2 * margin, A4[1] - 2 * margin
    st = styles()
    reproduced, others = _works(page)

    def picture(png: bytes | None, side: float):
        if not png:
            return ""
        img = Image(io.BytesIO(_sharp(png, side)))
        scale = side / max(img.imageWidth, img.imageHeight)
        img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
        return img

    def sentence(text: str) -> str:
        return text[:1].upper() + text[1:] + "."

    title = "Check my work" + (f": {page['name']}" if page.get("name") else "")
    story: list[Any] = [para(title, "title"),
                        para(f"{page['model']} · {page['generations']} generations of {len(page['prompts'])} prompts"
                             f" ({page['images_per_prompt']} images each) · checked "
                             f"{page['checked_at'][:16].replace('T', ' ')} UTC", "small"), Spacer(1, 6)]
    if page.get("name_warning"):
        story += [Paragraph(f"<b>Warning:</b> {safe_text(page['name_warning'])}.", st["alarm"]), Spacer(1, 4)]
    story.append(para(sentence(page["headline"]), "alarm" if reproduced else "ok"))
    if page.get("cancelled_words"):
        story.append(para(sentence(page["cancelled_words"]), "alarm"))
    if page.get("unknown_words_note"):
        story += [Spacer(1, 2), para(sentence(page["unknown_words_note"]))]
    story += [Spacer(1, 2), para(f"A near copy: a generation whose tiled l2 distance to your work is "
                                 f"{page['threshold']} or less (0 is the same picture; Carlini et al. 2023). Each "
                                 f"prompt made {page['images_per_prompt']} images, one per seed.", "small")]
    if reproduced:
        story += [Spacer(1, 6), para(f"Reproduced ({len(reproduced)})", "h2")]
        rows = [[picture(w["work_png"], 80), picture(w["generation_png"], 80), para(w["words"], "bold")]
                for w in reproduced]
        caption = [para("your work", "tiny"), para("generated", "tiny"), ""]
        table = Table([caption, *rows], colWidths=[88, 88, width - 176])
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 2),
                                   ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
        story.append(table)
    if others:
        story += [Spacer(1, 6), para(f"{'Not reproduced' if reproduced else 'Your works'} ({len(others)})", "h2"),
                  para("Each row: your work, the closest generation, and how close it came.", "tiny"), Spacer(1, 2)]

        def detail(x: dict[str, Any]) -> Paragraph:
            if x["best_tiled_l2"] is None:
                how = "no generation came near it"
            else:
                how = f"closest tiled l2 {x['best_tiled_l2']:.2f} (not a copy), by '{x['best_prompt']}'"
            return Paragraph(f"<b>{safe_text(x['file_name'])}</b><br/>{safe_text(how)}", st["cell"])

        def table_of(chunk: list[dict[str, Any]], w: float) -> Table:
            rows = [[picture(x["work_png"], 20), picture(x["generation_png"], 20), detail(x)] for x in chunk]
            t = Table(rows, colWidths=[24, 24, w - 48])
            t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 2),
                                   ("RIGHTPADDING", (0, 0), (-1, -1), 2), ("TOPPADDING", (0, 0), (-1, -1), 1),
                                   ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                                   ("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.lightgrey)]))
            return t

        if len(others) > SPLIT_ABOVE:
            half = (len(others) + 1) // 2
            col = (width - 8) / 2
            both = Table([[table_of(others[:half], col), table_of(others[half:], col)]], colWidths=[col + 4, col + 4])
            both.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                                      ("RIGHTPADDING", (0, 0), (-1, -1), 4)]))
            story.append(both)
        else:
            story.append(table_of(others, width))
    story += [Spacer(1, 8), para("Prompts tried: " + " · ".join(page["prompts"]), "tiny"), Spacer(1, 2),
              para(f"Made with Memorization Inspector {__version__}. File names only: this page names no folder.",
                   "tiny")]
    doc = SimpleDocTemplate(stream, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=margin,
                            bottomMargin=margin, title=title, author="", creator="Memorization Inspector",
                            producer="Memorization Inspector", subject="", keywords="")
    # The frame is a few points smaller than the page's so that rounding never pushes it onto a second page.
    doc.build([KeepInFrame(width - 6, height - 6, story, mode="shrink")])


def export_artist_page(page: dict[str, Any], out: str | os.PathLike, fmt: str | None = None,
                       overwrite: bool = False) -> Path:
    """Write the page to ``out`` as ``fmt`` ("html" or "pdf"; default from the file name's ending). The file
    appears only when complete; an existing ``out`` is replaced only with ``overwrite``.

    Raises
    ------
    UserError
        When the format is unknown, the folder does not exist, ``out`` is a folder, exists without
        ``overwrite`` or cannot be written. ``out`` is then left as it was.
    """
    out = Path(out)
    fmt = fmt or out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(f"the page is written as HTML or PDF: name the file .html or .pdf (not {out.name})")
    if out.is_dir():
        raise UserError(f"{out} is a folder: give the path of the file to write")
    if not out.parent.is_dir():
        raise UserError(f"the folder {out.parent} does not exist: create it or choose another file")
    if not overwrite and (out.exists() or out.is_symlink()):
        raise UserError(exists_message(out))
    try:
        if fmt == "pdf":
            tmp = write_part(out, lambda stream: render_artist_pdf(page, stream), mode="wb")
        else:
            tmp = write_part(out, lambda stream: render_artist_html(page, stream), mode="w")
    except OSError as exc:
        raise write_failure(exc, out) from None
    publish_all([(tmp, out)], overwrite)
    return out


__all__ = ["FORMATS", "export_artist_page", "render_artist_html", "render_artist_pdf"]
