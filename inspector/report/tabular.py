"""CSV for a spreadsheet (one row per finding) and JSON for programs (every field but the image bytes, whose
sha256 stands for them), of the findings a :class:`~inspector.report.data.ReportData` chose."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from typing import IO, Any

from inspector.casebook import model_identity, verdict_neighbour
from inspector.findings import Finding, LabelEvent, Neighbour
from inspector.provenance import QUERY_KIND, finding_kind, json_safe
from inspector.report.data import ReportData
from inspector.roles import role_of

CSV_COLUMNS = (
    "id", "label", "reviewer", "notes", "suggested_verdict", "suggestion_reason", "prompt", "negative_prompt",
    "seed", "model_id", "model_sha256", "nearest_tiled_l2", "nearest_l2", "nearest_ssim", "nearest_calibrated_l2",
    "nearest_source", "nearest_caption", "nearest_duplicate_count", "comparison_size", "image_sha256", "created_at",
    "updated_at",
    "provenance", "nearest_url", "index_role", "index_source", "index_images", "index_built", "index_content_hash",
    # "generation", or "query": an image a person asked about (no prompt, no seed: those cells stay empty).
    "kind", "query_file",
)


def finding_record(finding: Finding, history: list[LabelEvent]) -> dict[str, Any]:
    """A finding as plain JSON data: every field but the image bytes (their sha256 stands for them). A query
    image (kind "query") has no seed: null, and its file name instead."""
    kind = finding_kind(finding.provenance)
    data = {
        "id": finding.id,
        "kind": kind,
        "file_name": finding.provenance.get("file_name") if kind == QUERY_KIND else None,
        "prompt": finding.prompt,
        "negative_prompt": finding.negative_prompt,
        "seed": None if kind == QUERY_KIND else finding.seed,
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
        "run_ids": list(getattr(finding, "run_ids", []) or []),
        "neighbours": [_neighbour_record(n) for n in finding.neighbours],
        "label_history": [e.as_dict() for e in history],
    }
    return json_safe(data, non_finite="null")  # as the casebook reads it back: plain JSON data already


def _neighbour_record(n: Neighbour) -> dict[str, Any]:
    data = n.as_dict()
    thumb = data.pop("thumbnail_png")
    data["thumbnail_sha256"] = hashlib.sha256(thumb).hexdigest() if thumb else None
    pixels = data.pop("pixels_png")
    data["pixels_sha256"] = hashlib.sha256(pixels).hexdigest() if pixels else None
    return data


def render_json(data: ReportData, stream: IO[str]) -> int:
    """One JSON document: the export's facts (filters, verification, chain head), the counts of the chosen
    findings, the prompts' summaries and the findings with neighbours and label history."""
    book = data.casebook
    head = {
        "format": "Memorization Inspector casebook export",
        "inspector_version": data.versions["inspector"],
        "casebook": data.casebook_name,
        "casebook_sha256": data.casebook_sha256,
        "schema_version": data.schema_version,
        "chain_head": data.chain_head,
        "chain_events": data.chain_events,
        "exported_at": data.exported_at_utc,
        "filters": data.selection.as_dict(),
        "verified": data.verified,
        "verify": data.check.as_dict(),
        "counts": data.counts,
        "prompts": [{"prompt": p.prompt, "generated": p.generated, "generated_from_runs": p.generated_from_runs,
                     "runs": [r.id for r in p.runs], "suggested": p.suggested, "labels": p.labels,
                     "clique": p.clique, "wen": p.wen, "findings": p.finding_ids,
                     "copied": None if p.copied is None else
                     {"finding": p.copied_finding, "rank": p.copied.neighbour.rank,
                      "tiled_l2": p.copied.neighbour.tiled_l2, "source": p.copied.neighbour.source,
                      "url": p.copied.neighbour.url, "licence": p.copied.neighbour.licence,
                      "duplicate_count": p.copied.neighbour.duplicate_count,
                      "caption": p.copied.neighbour.caption}}
                    for p in data.prompts],
    }
    stream.write(json.dumps(json_safe(head, non_finite="null"), ensure_ascii=False, indent=2)[:-2] + ',\n  "findings": [')
    for n, summary in enumerate(data.summaries):
        record = finding_record(book.get(summary.id), book.label_history(summary.id))
        stream.write(("," if n else "") + "\n    " + json.dumps(record, ensure_ascii=False, allow_nan=False))
    stream.write("\n  ]\n}\n")
    return len(data.summaries)


def _cell(value: Any) -> Any:
    """A spreadsheet-safe cell: text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return "" if value is None else value


def render_csv(data: ReportData, stream: IO[str]) -> int:
    """One row per finding with its label, suggestion, prompt, model and the distances to its nearest."""
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    for summary in data.summaries:
        f = data.casebook.get(summary.id)
        nearest = verdict_neighbour(f.neighbours)  # the distance the verdict used, whatever the ranks say
        model_id, model_sha = model_identity(f.provenance)
        query = summary.kind == QUERY_KIND  # the summary already read the kind and file name from the record
        row = {
            "id": f.id, "label": f.label, "reviewer": f.reviewer, "notes": f.notes,
            "suggested_verdict": f.suggested_verdict, "suggestion_reason": f.suggestion_reason,
            "prompt": f.prompt, "negative_prompt": f.negative_prompt, "seed": None if query else f.seed,
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
            "provenance": json.dumps(f.provenance, ensure_ascii=False),
            "nearest_url": nearest.url if nearest else None,
            "index_role": (f.index or {}).get("role") or role_of(f.neighbours),
            "index_source": (f.index or {}).get("source"),
            "index_images": (f.index or {}).get("images"),
            "index_built": (f.index or {}).get("built"),
            "index_content_hash": (f.index or {}).get("content_hash"),
            "kind": summary.kind,
            "query_file": summary.file_name if query else None,
        }
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return len(data.summaries)
