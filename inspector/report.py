"""Exports of a casebook for people who do not run the inspector: a self-contained HTML report for a legal
reviewer, CSV for a spreadsheet, JSON for programs.

Everything is written atomically (:func:`export`): a temporary file beside the target, renamed over it only
when complete, so an error never leaves half a report. No Qt here.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from inspector import __version__, heatmap, metrics
from inspector.casebook import Casebook, model_identity
from inspector.casebook.jsontext import dumps, jsonable
from inspector.casebook.paths import is_casebook_file
from inspector.casebook.store import verdict_neighbour
from inspector.errors import UserError
from inspector.extraction import BORDERLINE_MARGIN
from inspector.findings import LABELS, UNLABELED, Finding, LabelEvent, Neighbour
from inspector.images import as_uint8, canonical
from inspector.roles import describe_index, origin_words, role_of, role_words

FORMATS = ("html", "csv", "json")

LABEL_WORDS = {
    "memorized": "Memorized: a near copy of a training image",
    "likeness-only": "Likeness only: the same subject as training images, but no near copy",
    "novel": "Novel: neither a copy nor a likeness",
    UNLABELED: "Not labeled yet",
}


def label_words(label: str, role: str | None = None) -> str:
    """A label in words, naming what the generation was compared with (the index's role)."""
    words = role_words(role)
    return {
        "memorized": f"Memorized: a near copy of {words.a_image}",
        "likeness-only": f"Likeness only: the same subject as {words.images}, but no near copy",
    }.get(label) or LABEL_WORDS.get(label, label)


def _report_role(roles: set[str]) -> str | None:
    """The one role of every finding in a report, or None when they differ (then words name both)."""
    if not roles:
        return "training"
    return next(iter(roles)) if len(roles) == 1 else None

ACTION_WORDS = {"record": "recorded", "label": "labeled", "undo": "undid a label change", "note": "changed the notes"}
#: Side of the heatmaps in the HTML report, in pixels of comparison (they are shown larger).
HEATMAP_SIDE = 128
#: Largest difference on the heatmap colour scale (mean absolute channel difference in [0, 1]).
HEATMAP_VMAX = 0.5


def export(casebook: Casebook, out: str | os.PathLike, fmt: str, overwrite: bool = False) -> int:
    """Write the whole casebook to ``out`` as ``fmt`` ("html", "csv" or "json"); return the number of findings.

    An existing ``out`` is replaced only when ``overwrite`` is true; the casebook itself (and its ``-wal``,
    ``-shm`` and ``-journal`` files) never is, whatever ``overwrite`` says.

    Raises
    ------
    UserError
        When the format is unknown, ``out`` is the casebook, ``out`` exists and ``overwrite`` is false, or ``out``
        cannot be written (its folder is missing, it is a folder, no permission, disk full). ``out`` is then left
        as it was and nothing else is written.
    """
    writers = {"html": write_html, "csv": write_csv, "json": write_json}
    if fmt not in writers:
        raise UserError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder: give the path of the file to write")
    if not out.parent.is_dir():
        raise UserError(f"the folder {out.parent} does not exist: create it or choose another --out")
    if casebook.path is not None and is_casebook_file(out, casebook.path):
        raise UserError(f"{out} is the casebook being exported (or one of its files): write the export to another"
                        " file; the casebook is never replaced")
    if not overwrite and (out.exists() or out.is_symlink()):
        raise UserError(f"{out} already exists: choose another file name, or pass --overwrite to replace it")
    with atomic_text_file(out, newline="" if fmt == "csv" else None, overwrite=overwrite) as stream:
        return writers[fmt](casebook, stream)


@contextmanager
def atomic_text_file(path: Path, newline: str | None = None, overwrite: bool = True) -> Iterator[IO[str]]:
    """A UTF-8 text file that appears at ``path`` only when the block finishes without an error.

    It is written to a temporary file in the same folder, flushed to disk, then renamed. With ``overwrite``
    false an existing ``path`` is never replaced, even one created while the export was being written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        with open(tmp, "x", encoding="utf-8", newline=newline) as stream:  # mode 0666 & ~umask, like any file
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _publish(tmp, path, overwrite)
        _fsync_folder(path.parent)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path} already exists: choose another file name, or pass --overwrite to replace it"
                        ) from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``: a rename, or without ``overwrite`` a hard link, which fails
    (FileExistsError) instead of replacing a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (a small window, but no worse)
        if path.exists() or path.is_symlink():
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; some systems cannot open a folder for this, which is not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _all_findings(casebook: Casebook) -> Iterator[Finding]:
    for summary in casebook.findings():
        yield casebook.get(summary.id)


# --- JSON -------------------------------------------------------------------------------------------------


def finding_record(finding: Finding, history: list[LabelEvent]) -> dict[str, Any]:
    """A finding as plain JSON data: every field but the image bytes (their sha256 stands for them)."""
    data = {
        "id": finding.id,
        "prompt": finding.prompt,
        "negative_prompt": finding.negative_prompt,
        "seed": finding.seed,
        "label": finding.label,
        "reviewer": finding.reviewer,
        "notes": finding.notes,
        "suggested_verdict": finding.suggested_verdict,
        "suggestion_reason": finding.suggestion_reason,
        "metrics": finding.metrics,
        "provenance": finding.provenance,
        "image_sha256": finding.image_sha256,
        "created_at": finding.created_at,
        "updated_at": finding.updated_at,
        "index": finding.index,  # the index searched: role, source, images, built, content_hash
        "neighbours": [_neighbour_record(n) for n in finding.neighbours],
        "label_history": [e.as_dict() for e in history],
    }
    return _finite(jsonable(data))


def _neighbour_record(n: Neighbour) -> dict[str, Any]:
    data = n.as_dict()
    thumb = data.pop("thumbnail_png")
    data["thumbnail_sha256"] = _sha256(thumb) if thumb else None
    pixels = data.pop("pixels_png")
    data["pixels_sha256"] = _sha256(pixels) if pixels else None
    return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _finite(value: Any) -> Any:
    """Strict JSON: a non-finite number becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(casebook: Casebook, stream: IO[str]) -> int:
    """One JSON document: the casebook's counts and its findings with neighbours and label history."""
    head = {
        "format": "Memorization Inspector casebook export",
        "inspector_version": __version__,
        "casebook": casebook.path.name if casebook.path else ":memory:",
        "schema_version": casebook.schema_version,
        "counts": casebook.counts(),
    }
    stream.write(json.dumps(head, ensure_ascii=False, indent=2)[:-2] + ',\n  "findings": [')
    n = 0
    for finding in _all_findings(casebook):
        record = finding_record(finding, casebook.label_history(finding.id))
        stream.write(("," if n else "") + "\n    " + json.dumps(record, ensure_ascii=False, allow_nan=False))
        n += 1
    stream.write("\n  ]\n}\n")
    return n


# --- CSV --------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id", "label", "reviewer", "notes", "suggested_verdict", "suggestion_reason", "prompt", "negative_prompt",
    "seed", "model_id", "model_sha256", "nearest_tiled_l2", "nearest_l2", "nearest_ssim", "nearest_calibrated_l2",
    "nearest_source", "nearest_caption", "nearest_duplicate_count", "comparison_size", "image_sha256", "created_at",
    "updated_at",
    "provenance", "nearest_url", "index_role", "index_source", "index_images", "index_built", "index_content_hash",
)


def _cell(value: Any) -> Any:
    """A spreadsheet-safe cell: text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return "" if value is None else value


def write_csv(casebook: Casebook, stream: IO[str]) -> int:
    """One row per finding with its label, suggestion, prompt, model and the distances to its nearest."""
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for f in _all_findings(casebook):
        nearest = verdict_neighbour(f.neighbours)  # the distance the verdict used, whatever the ranks say
        model_id, model_sha = model_identity(f.provenance)
        row = {
            "id": f.id, "label": f.label, "reviewer": f.reviewer, "notes": f.notes,
            "suggested_verdict": f.suggested_verdict, "suggestion_reason": f.suggestion_reason,
            "prompt": f.prompt, "negative_prompt": f.negative_prompt, "seed": f.seed,
            "model_id": model_id, "model_sha256": model_sha,
            "nearest_tiled_l2": nearest.tiled_l2 if nearest else None,
            "nearest_l2": nearest.l2 if nearest else None,
            "nearest_ssim": nearest.ssim if nearest else None,
            "nearest_calibrated_l2": nearest.calibrated_l2 if nearest else None,
            "nearest_source": nearest.source if nearest else None,
            "nearest_caption": nearest.caption if nearest else None,
            "nearest_duplicate_count": nearest.duplicate_count if nearest else None,
            "comparison_size": nearest.comparison_size if nearest else None,
            "image_sha256": f.image_sha256, "created_at": f.created_at, "updated_at": f.updated_at,
            "provenance": dumps(f.provenance),
            "nearest_url": nearest.url if nearest else None,
            "index_role": (f.index or {}).get("role") or role_of(f.neighbours),
            "index_source": (f.index or {}).get("source"),
            "index_images": (f.index or {}).get("images"),
            "index_built": (f.index or {}).get("built"),
            "index_content_hash": (f.index or {}).get("content_hash"),
        }
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
        n += 1
    return n


# --- HTML -------------------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #111; max-width: 1200px; margin: 0 auto; padding: 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin: 0 0 .4em; } h3 { font-size: 1em; margin: 1em 0 .3em; }
table { border-collapse: collapse; } td, th { border: 1px solid #bbb; padding: 3px 8px; text-align: left;
  vertical-align: top; }
.finding { border: 2px solid #333; border-radius: 6px; padding: 1em; margin: 1.5em 0; page-break-inside: avoid; }
.label { font-weight: bold; text-transform: uppercase; letter-spacing: .03em; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; width: 200px; } figure.generation { width: 256px; }
figure img { width: 100%; image-rendering: pixelated; border: 1px solid #888; display: block; }
figcaption, .caption { font-size: 13px; margin: 4px 0; overflow-wrap: anywhere; }
.prompt { font-family: ui-monospace, monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
.words { font-weight: bold; } .muted { color: #555; } .problem { color: #a00; font-weight: bold; }
.hash { font-family: ui-monospace, monospace; font-size: 12px; }
details summary { cursor: pointer; }
"""


def esc(value: Any) -> str:
    """``value`` as HTML text: every user-supplied string goes through here."""
    return html.escape("" if value is None else str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def _open(png: bytes) -> Image.Image:
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return im.copy()


def comparison_arrays(generation_png: bytes, n: Neighbour) -> tuple[np.ndarray, np.ndarray] | None:
    """The generation and the training image exactly as their distances were computed: two uint8 arrays of
    ``n.comparison_size`` px (the generation's canonical form, made again from its stored PNG the way the index
    made it; the neighbour's compared pixels as the casebook keeps them). None for a neighbour recorded without
    its compared pixels (casebooks before version 2)."""
    train = n.comparison_pixels()
    if train is None:
        return None
    return as_uint8(canonical(_open(generation_png), int(train.shape[0]))), train


def heatmap_pictures(generation_png: bytes, n: Neighbour, tile_grid: bool = False) -> tuple[bytes, bytes | None, bool]:
    """The pixel-difference heatmap of a generation against a neighbour (as PNG), with ``tile_grid`` also the
    4 x 4 tile-l2 picture, and whether they are exact.

    Exact (the usual case): computed from :func:`comparison_arrays`, the two arrays the stored distances came
    from, so the tile numbers are the stored tiled l2's tiles. Findings recorded before the compared pixels
    were kept fall back to the stored thumbnail (at most :data:`HEATMAP_SIDE` px): close to, not equal to, the
    stored distances, and the report says so."""
    arrays = comparison_arrays(generation_png, n)
    exact = arrays is not None
    if arrays is None:
        if not n.thumbnail_png:
            raise ValueError(f"neither the compared pixels nor a thumbnail of this {role_words(n.index_role).image} "
                             "were stored")
        thumb = _open(n.thumbnail_png)
        side = max(8, min(HEATMAP_SIDE, *thumb.size))
        arrays = canonical(_open(generation_png), side), canonical(thumb, side)
    a, b = arrays
    diff = heatmap.overlay(b, metrics.pixel_difference_map(a, b), vmax=HEATMAP_VMAX)
    tiles = _png(heatmap.tile_grid_picture(a, b, max(int(a.shape[0]), 128))) if tile_grid else None
    return _png(diff), tiles, exact


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _format_value(value: Any) -> str:
    if isinstance(value, (list, Mapping)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _distance_words(n: Neighbour) -> list[str]:
    words = role_words(n.index_role)
    lines = [metrics.describe_tiled_l2(n.tiled_l2) if n.tiled_l2 is not None else "tiled l2 not recorded"]
    if n.comparison_size is not None:
        lines.append(f"compared at {n.comparison_size} x {n.comparison_size} px")
    if n.l2 is not None:
        lines.append(f"l2 {n.l2:.3f} (0 = identical)")
    if n.ssim is not None:
        lines.append(f"SSIM {n.ssim:.3f} (1 = identical structure)")
    if n.calibrated_l2 is not None:
        crowd = "far closer than" if n.calibrated_l2 < 1 else "no closer than"
        lines.append(f"calibrated l2 {n.calibrated_l2:.2f}: {crowd} the crowd of near {words.images}"
                     " (below 1 is a sign of copying)")
    if n.semantic_similarity is not None:
        lines.append(f"semantic similarity {n.semantic_similarity:.2f} (1 = same content)")
    return lines


def _origin_html(url: str | None) -> str:
    """Where the image was downloaded from: a link for a web address, plain text for anything else."""
    if not url:
        return ""
    if url.lower().startswith(("http://", "https://")):
        return f'<br>url: <a href="{esc(url)}">{esc(url)}</a>'
    return f"<br>{esc(origin_words(url))}"


def _neighbour_html(f: Finding, n: Neighbour, verdict: Neighbour | None = None) -> str:
    role = role_words(n.index_role)
    words = "".join(f"<br>{esc(line)}" for line in _distance_words(n))
    about = " (the suggestion is about this image)" if n is verdict else ""
    parts = [f'<figure class="neighbour"><p class="caption"><b>Nearest {esc(n.rank)}</b>{about}</p>']
    if n.thumbnail_png:
        alt = f"{role.image} {n.item_id}: {n.caption}"
        parts.append(f'<img src="{_data_uri(n.thumbnail_png)}" alt="{esc(alt)}">')
        try:
            diff, tiles, exact = heatmap_pictures(f.image_png, n, tile_grid=n is verdict)
        except (OSError, ValueError) as exc:  # a damaged image must not stop the report
            parts.append(f'<p class="problem">heatmap not available: {esc(exc)}</p>')
        else:
            if exact:
                parts.append(f'<p class="caption">Heatmaps at {esc(n.comparison_size)} x {esc(n.comparison_size)}'
                             " px, from the two images the distances came from.</p>")
            else:
                parts.append('<p class="caption muted">Heatmaps drawn from thumbnails (this finding was recorded'
                             " before the compared pixels were kept): close to, not equal to, the distances.</p>")
            parts.append('<p class="caption">Where they differ (dark blue = same, yellow = different):</p>')
            parts.append(f'<img src="{_data_uri(diff)}" alt="pixel difference heatmap against nearest {esc(n.rank)}">')
            if tiles:
                parts.append('<p class="caption">Tile l2 over a 4 x 4 grid (the worst tile outlined in red):</p>')
                parts.append(f'<img src="{_data_uri(tiles)}" alt="tile l2 grid against nearest {esc(n.rank)}">')
    else:
        parts.append('<p class="muted">(no thumbnail stored)</p>')
    parts.append(
        f'<figcaption><span class="words">{words[4:]}</span><br>caption: {esc(n.caption)}'
        + (f' <span class="muted">(from {esc(n.caption_source)})</span>' if n.caption_source == "the file name" else "")
        + f'<br>file: {esc(n.source)}{_origin_html(n.url)}<br>{esc(role.times(n.duplicate_count))}'
        f'<br><span class="muted">{esc(role.image)}, item {esc(n.item_id)} of index {esc(n.index_id) or "(unnamed)"}</span>'
        + (f"<br>licence: {esc(n.licence)}" if n.licence else "")
        + "</figcaption></figure>"
    )
    return "".join(parts)


def _history_html(history: list[LabelEvent]) -> str:
    rows = []
    for e in history:
        action = ACTION_WORDS.get(e.action, e.action)
        if e.action == "undo" and e.undoes is not None:
            action += f" (event {e.undoes})"
        change = esc(e.label) if e.previous_label in (None, e.label) else f"{esc(e.previous_label)} &rarr; {esc(e.label)}"
        rows.append(
            f"<tr><td>{esc(e.id)}</td><td>{esc(e.created_at)}</td><td>{esc(action)}</td><td>{change}</td>"
            f"<td>{esc(e.reviewer)}</td><td>{esc(e.note)}</td><td class=\"hash\" title=\"{esc(e.hash)}\">"
            f"{esc(e.hash[:16])}&hellip;</td></tr>"
        )
    return ("<table><tr><th>event</th><th>time (UTC)</th><th>what</th><th>label</th><th>reviewer</th>"
            "<th>note</th><th>hash</th></tr>" + "".join(rows) + "</table>")


def _margin_html(metrics: Mapping[str, Any]) -> str:
    """The suggestion's margin (threshold minus the nearest tiled l2, signed) in words; borderline stands out."""
    margin = float(metrics["margin"])
    side = "at or under the line: a near copy" if margin >= 0 else "above the line: not a near copy"
    text = f"{margin:+.3f} (the threshold minus the nearest tiled l2; {side})"
    if metrics.get("borderline"):
        text = (f"<strong>Borderline</strong>: {text}, within {BORDERLINE_MARGIN:.2f} of the line, where a little "
                "blur or a crop can move a distance across it. Compare the images before relying on the suggestion.")
    return text


def finding_html(f: Finding, history: list[LabelEvent]) -> str:
    """One finding as an HTML ``<section>``: label, suggestion, prompt, the generation beside its nearest
    training images with distances in words and heatmaps, the label history and the provenance."""
    suggestion = esc(f.suggested_verdict or "none")
    if f.suggestion_reason:
        suggestion += f": {esc(f.suggestion_reason)}"
    facts = [
        ("Prompt", f'<span class="prompt">{esc(f.prompt)}</span>'),
        ("Negative prompt", f'<span class="prompt">{esc(f.negative_prompt)}</span>' if f.negative_prompt else "(none)"),
        ("Seed", esc(f.seed)),
        ("Suggested by the inspector", suggestion + ' <span class="muted">(a suggestion, not a label)</span>'),
        ("Reviewer", esc(f.reviewer) or "(none)"),
        ("Notes", esc(f.notes) or "(none)"),
        ("Recorded", esc(f.created_at)),
        ("Generation sha256", f'<span class="hash">{esc(f.image_sha256)}</span>'),
    ]
    if isinstance(f.metrics.get("margin"), int | float):
        facts.insert(4, ("Distance to the extraction line", _margin_html(f.metrics)))
    provenance = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_format_value(v))}</td></tr>"
                         for k, v in _flatten(f.provenance))
    verdict = verdict_neighbour(f.neighbours)
    role = (f.index or {}).get("role") or role_of(f.neighbours)
    facts.insert(3, ("Index searched", esc(describe_index(f.index)) if f.index else
                     f"{esc(role_words(role).role_name)} (not named: recorded before indexes were named)"))
    return "".join([
        f'<section class="finding" id="finding-{esc(f.id)}">',
        f'<h2>Finding {esc(f.id)}: <span class="label">{esc(label_words(f.label, role))}</span></h2>',
        "<table>", "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts), "</table>",
        f"<h3>The generation and its nearest {esc(role_words(role).images)}</h3>",
        '<p class="muted">Ordered by tiled l2, nearest first: nearest 1 is the image the suggestion is about.</p>',
        '<div class="row"><figure class="generation">',
        f'<img src="{_data_uri(f.image_png)}" alt="generation of finding {esc(f.id)}">',
        f"<figcaption><b>Generation</b> (seed {esc(f.seed)})</figcaption></figure>",
        "".join(_neighbour_html(f, n, verdict) for n in f.neighbours)
        or '<p class="muted">(no neighbours recorded)</p>',
        "</div>",
        "<h3>Label history</h3>", _history_html(history),
        "<details><summary><b>Provenance</b> (how to regenerate this image)</summary>",
        f"<table>{provenance}</table></details>" if provenance else "<p>(none recorded)</p></details>",
        "</section>\n",
    ])


def _legend_uri() -> str:
    return _data_uri(_png(heatmap.legend(120, HEATMAP_VMAX, "difference", width=110)))


def write_html(casebook: Casebook, stream: IO[str], title: str | None = None) -> int:
    """A self-contained HTML report (images inline as data: URIs, no script, nothing fetched)."""
    name = casebook.path.name if casebook.path else "in-memory casebook"
    title = title or f"Casebook report: {name}"
    counts = casebook.counts()
    total = sum(counts.values())
    check = casebook.verify()
    summaries = casebook.findings()
    searched = casebook.indexes_searched()
    role = _report_role({i["role"] for i in searched})
    words = role_words(role)
    images = words.images if role else "training or reference images (each finding names its index)"
    collection = words.collection if role else "the index each finding names (a training set or a reference collection)"
    stream.write(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:;"
        " style-src 'unsafe-inline'\">"
        f"<meta name=\"generator\" content=\"Memorization Inspector {esc(__version__)}\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n"
    )
    count_rows = "".join(f"<tr><td>{esc(label_words(k, role) if role else LABEL_WORDS[k].split(':')[0])}</td>"
                         f"<td>{counts[k]}</td></tr>" for k in (*LABELS, UNLABELED))
    searched_rows = "".join(f"<li>{esc(describe_index(i) if i.get('source') else role_words(i['role']).role_name)}"
                            "</li>" for i in searched)
    if check.ok:
        integrity = f"<p>Integrity: <b>verified</b>. {esc(check.summary())}.</p>"
    else:
        items = "".join(f"<li>{esc(p)}</li>" for p in check.problems)
        integrity = (f'<p class="problem">Integrity: {esc(check.summary())}. This casebook was changed outside'
                     f" the inspector or is damaged; treat the findings named below with care.</p><ul>{items}</ul>")
    stream.write(
        f"<section><h2>Summary</h2><p>{total} findings in <b>{esc(name)}</b>, exported by Memorization"
        f" Inspector {esc(__version__)} (casebook version {casebook.schema_version}).</p>"
        f"<table><tr><th>label</th><th>findings</th></tr>{count_rows}</table>{integrity}"
        + (f"<h3>What was searched</h3><ul>{searched_rows}</ul>" if searched_rows else "")
        + "<h3>How to read this report</h3><p>Each finding is one generated image beside the four most similar"
        f" images of {esc(collection)}. Distances follow Carlini et al. 2023: <b>tiled l2</b> is the largest"
        " pixel distance over a 4 x 4 grid of tiles, from 0 (identical) to 1; at "
        f"{metrics.EXTRACTION_THRESHOLD:.2f} or less the generation is a near copy. Both images are compared at"
        " one square size, the smaller of the generation's and the index's, never enlarged (each neighbour states"
        " it); the four nearest are ordered by tiled l2. The heatmaps show where the generation and"
        f" one of the {esc(images)} differ, pixel by pixel, computed from the same two images as the"
        " distances:</p>"
        f'<img src="{_legend_uri()}" alt="colour scale: dark blue means the same, yellow means different">'
        "<p>The label is a person's judgement; the suggestion is the inspector's. Each label change is kept in"
        " the label history, chained by hashes so that later changes are detectable.</p></section>\n"
    )
    if summaries:
        toc = "".join(
            f'<tr><td><a href="#finding-{s.id}">{s.id}</a></td><td>{esc(s.label)}</td>'
            f"<td>{esc(s.suggested_verdict or '')}</td><td class=\"prompt\">{esc(s.prompt)}</td></tr>"
            for s in summaries)
        stream.write("<section><h2>Findings</h2><table><tr><th>id</th><th>label</th><th>suggested</th>"
                     f"<th>prompt</th></tr>{toc}</table></section>\n")
    for s in summaries:
        stream.write(finding_html(casebook.get(s.id), casebook.label_history(s.id)))
    stream.write("</body></html>\n")
    return len(summaries)


__all__ = ["FORMATS", "export", "write_csv", "write_html", "write_json", "finding_html", "finding_record",
           "heatmap_pictures", "comparison_arrays", "esc", "atomic_text_file"]
