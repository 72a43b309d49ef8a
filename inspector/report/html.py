"""The HTML report: one self-contained file (images inline as ``data:`` URIs, no script, nothing fetched),
rendered from the package's jinja2 templates with autoescaping, so that every prompt, caption, note, reviewer
and file name is text, never markup. Printed (or saved as PDF by a browser) it keeps every section open, one
finding per page, with "page x of y" and the finding's id in the page margins."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import IO

import jinja2

from inspector import metrics
from inspector.findings import LABELS, UNLABELED
from inspector.report.data import (
    HEATMAP_VMAX,
    LABEL_WORDS,
    PIXEL_HASH_WORDS,
    TILE_VMAX,
    Picture,
    ReportData,
    index_rows,
    label_words,
    legend_picture,
)
from inspector.roles import describe_index, role_words

TEMPLATE = "report.html.j2"


@cache
def environment() -> jinja2.Environment:
    """The template environment: templates from the package (``inspector/report/templates``), autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("inspector.report", "templates"),
        autoescape=True,  # every template, whatever its name: nothing user-supplied is ever markup
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.Undefined,
    )
    return env


def _css() -> str:
    return resources.files("inspector.report").joinpath("templates", "report.css").read_text(encoding="utf-8")


def render_html(data: ReportData, stream: IO[str], embedded: list[Picture] | None = None) -> int:
    """Write the report of ``data`` to ``stream``; return the number of findings. Each picture written is
    appended to ``embedded`` (for the manifest), in the order it appears."""
    seen: list[Picture] = [] if embedded is None else embedded

    def uri(picture: Picture) -> str:
        seen.append(picture)
        return picture.data_uri

    env = environment().overlay()
    env.filters["uri"] = uri
    role = data.role
    words = role_words(role)
    template = env.get_template(TEMPLATE)
    context = {
        "data": data,
        "css": _css(),
        "label_keys": (*LABELS, UNLABELED),
        "count_words": {k: (label_words(k, role) if role else LABEL_WORDS[k].split(":")[0])
                        for k in (*LABELS, UNLABELED)},
        "index_line": lambda i: describe_index(i) if i.get("source") else role_words(i.get("role")).role_name,
        "index_rows": index_rows,
        "label_summary": _label_summary,
        "collection": words.collection if role else
        "the index each finding names (a training set or a reference collection)",
        "images": words.images if role else "training or reference images (each finding names its index)",
        "threshold": metrics.EXTRACTION_THRESHOLD,
        "pixel_hash_words": PIXEL_HASH_WORDS,
        "difference_legend": legend_picture("difference", HEATMAP_VMAX, "legend: pixel difference"),
        "tile_legend": legend_picture("tile l2", TILE_VMAX, "legend: tile l2"),
    }
    for chunk in template.generate(**context):
        stream.write(chunk)
    return len(data.summaries)


def _label_summary(labels: dict[str, int]) -> str:
    parts = [f"{n} {k}" for k, n in labels.items() if n]
    return ", ".join(parts) or "none"
