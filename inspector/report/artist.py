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
        img = Image(io.BytesIO(png))
        scale = side / max(img.imageWidth, img.imageHeight)
        img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
        return img

    title = "Check my work" + (f": {page['name']}" if page.get("name") else "")
    story: list[Any] = [para(title, "title"),
                        para(f"{page['model']} · {page['generations']} generations of {len(page['prompts'])} prompts"
                             f" ({page['images_per_prompt']} images each) · checked "
                             f"{page['checked_at'][:16].replace('T', ' ')} UTC", "small")]
    if page.get("name_warning"):
        story.append(Paragraph(f"<b>Warning:</b> {safe_text(page['name_warning'])}.", st["alarm"]))
    headline = page["headline"][:1].upper() + page["headline"][1:] + "."
    story += [Spacer(1, 4), para(headline, "alarm" if reproduced else "ok")]
    if page.get("cancelled_words"):
        story.append(para(page["cancelled_words"][:1].upper() + page["cancelled_words"][1:] + ".", "alarm"))
    story.append(para(f"A near copy: a generation whose tiled l2 distance to your work is {page['threshold']} or "
                      "less (0 is the same picture; Carlini et al. 2023). Each prompt made "
                      f"{page['images_per_prompt']} images, one per seed.", "small"))
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
        story += [Spacer(1, 6), para(f"{'Not reproduced' if reproduced else 'Your works'} ({len(others)})", "h2")]
        head = [para(h, "tiny") for h in ("work", "closest", "file", "closest tiled l2", "by the prompt")]

        def table_of(chunk: list[dict[str, Any]], w: float) -> Table:
            rows = [[picture(x["work_png"], 18), picture(x["generation_png"], 18), para(x["file_name"], "cell"),
                     para("no generation came near" if x["best_tiled_l2"] is None
                          else f"{x['best_tiled_l2']:.2f} (not a copy)", "cell"),
                     para(x["best_prompt"], "cell")] for x in chunk]
            t = Table([head, *rows], colWidths=[22, 22, 0.33 * (w - 44), 0.22 * (w - 44), 0.45 * (w - 44)])
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
    story += [Spacer(1, 6), para("Prompts tried: " + " · ".join(page["prompts"]), "tiny"),
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
