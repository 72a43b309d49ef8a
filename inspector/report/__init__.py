"""Exports of a casebook for people who do not run the inspector: a PDF and a self-contained HTML report for a
legal reviewer, CSV for a spreadsheet, JSON for programs.

One gathering (:func:`inspector.report.data.gather`) feeds every format; the HTML comes from jinja2 templates
with autoescaping (:mod:`inspector.report.html`), the PDF from reportlab (:mod:`inspector.report.pdf`). Every
export is sealed (:mod:`inspector.report.seal`): a manifest beside it, and OpenSSH signatures with ``sign``.
Everything is written atomically: temporary files beside the targets, published only when complete, so an
error never leaves half a report. No Qt here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from inspector.casebook import Casebook, is_casebook_file
from inspector.errors import UserError, write_failure
from inspector.fileio import write_part
from inspector.report.data import (
    ACTION_WORDS,
    HEATMAP_SIDE,
    HEATMAP_VMAX,
    LABEL_WORDS,
    Picture,
    ReportData,
    ReportOptions,
    Selection,
    comparison_arrays,
    gather,
    heatmap_pictures,
    label_words,
)
from inspector.report.files import (
    atomic_text_file,
    exists_message,
    publish_all,
    user_write_part,
)
from inspector.report.html import render_html
from inspector.report.seal import (
    build_manifest,
    file_digest,
    manifest_bytes,
    manifest_path,
    manifest_signature_path,
    sidecars,
    signature_path,
    verify_export,
)
from inspector.report.tabular import CSV_COLUMNS, finding_record, render_csv, render_json

FORMATS = ("html", "pdf", "csv", "json")


def write_html(casebook: Casebook, stream: IO[str], title: str | None = None, *, data: ReportData | None = None,
               embedded: list[Picture] | None = None) -> int:
    """The HTML report of ``data`` (default: the whole casebook) to a text stream; returns the findings."""
    data = data or gather(casebook, options=ReportOptions(title=title))
    return render_html(data, stream, embedded)


def write_csv(casebook: Casebook, stream: IO[str], *, data: ReportData | None = None,
              embedded: list[Picture] | None = None) -> int:
    """CSV, one row per finding of ``data`` (default: the whole casebook)."""
    return render_csv(data or gather(casebook), stream)


def write_json(casebook: Casebook, stream: IO[str], *, data: ReportData | None = None,
               embedded: list[Picture] | None = None) -> int:
    """One JSON document of ``data`` (default: the whole casebook)."""
    return render_json(data or gather(casebook), stream)


def write_pdf(casebook: Casebook, stream: IO[bytes], *, data: ReportData | None = None,
              embedded: list[Picture] | None = None) -> int:
    """The PDF report of ``data`` (default: the whole casebook) to a binary stream; returns the findings."""
    from inspector.report.pdf import render_pdf

    return render_pdf(data or gather(casebook, extra_versions=("reportlab",)), stream, embedded)


def export(
    casebook: Casebook,
    out: str | os.PathLike,
    fmt: str,
    overwrite: bool = False,
    *,
    selection: Selection | None = None,
    options: ReportOptions | None = None,
    sign: str | os.PathLike | None = None,
) -> int:
    """Write the chosen findings (``selection``, default all) of ``casebook`` to ``out`` as ``fmt`` ("html",
    "pdf", "csv" or "json"), with its manifest ``out.manifest.json`` beside it and, with ``sign`` (an OpenSSH
    Ed25519 private key file), the signatures ``out.sig`` and ``out.manifest.json.sig``. Returns the number of
    findings written.

    An existing ``out`` (or manifest, or signature) is replaced only when ``overwrite`` is true; the casebook
    itself (and its ``-wal``, ``-shm`` and ``-journal`` files) never is, whatever ``overwrite`` says. Replacing
    a signed export with an unsigned one removes the old signatures, which would no longer match.

    Raises
    ------
    UserError
        When the format is unknown, a target is the casebook, exists without ``overwrite`` or cannot be written,
        the selection chooses nothing, or the key cannot be used. Every target is then left as it was.
    """
    writers = {"html": write_html, "pdf": write_pdf, "csv": write_csv, "json": write_json}
    if fmt not in writers:
        raise UserError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder: give the path of the file to write")
    if not out.parent.is_dir():
        raise UserError(f"the folder {out.parent} does not exist: create it or choose another --out")
    targets = [out, *sidecars(out)]
    for target in targets:
        if casebook.path is not None and is_casebook_file(target, casebook.path):
            raise UserError(f"{target} is the casebook being exported (or one of its files): write the export to"
                            " another file; the casebook is never replaced")
    if not overwrite:
        for target in targets:
            if target.exists() or target.is_symlink():
                raise UserError(exists_message(target))
    signer = None
    if sign is not None:
        from inspector import sshsig

        signer = sshsig.load_private_key(sign)  # before anything is written: a wrong passphrase costs nothing
    data = gather(casebook, selection, options, extra_versions=("reportlab",) if fmt == "pdf" else ())
    embedded: list[Picture] = []
    parts: list[tuple[Path, Path]] = []
    counts: list[int] = []
    try:
        tmp = write_part(out, lambda stream: counts.append(writers[fmt](casebook, stream, data=data,
                                                                        embedded=embedded)),
                         mode="wb" if fmt == "pdf" else "w", newline="" if fmt == "csv" else None)
        parts.append((tmp, out))
        n = counts[0]
        digest, size = file_digest(tmp)
        manifest = manifest_bytes(build_manifest(out, fmt, digest, size, data, embedded, signer))
        parts.append((user_write_part(manifest_path(out), manifest), manifest_path(out)))
        if signer is not None:
            from inspector import sshsig

            parts.append((user_write_part(signature_path(out), sshsig.sign(tmp.read_bytes(), signer).encode()),
                          signature_path(out)))
            parts.append((user_write_part(manifest_signature_path(out), sshsig.sign(manifest, signer).encode()),
                          manifest_signature_path(out)))
    except OSError as exc:
        for part, _ in parts:
            part.unlink(missing_ok=True)
        raise write_failure(exc, out) from None
    except BaseException:
        for part, _ in parts:
            part.unlink(missing_ok=True)
        raise
    publish_all(parts, overwrite)
    if signer is None:  # an older signature beside a replaced export would no longer match it
        for stale in (signature_path(out), manifest_signature_path(out)):
            stale.unlink(missing_ok=True)
    return n


__all__ = [
    "ACTION_WORDS", "CSV_COLUMNS", "FORMATS", "HEATMAP_SIDE", "HEATMAP_VMAX", "LABEL_WORDS", "ReportData",
    "ReportOptions", "Selection", "atomic_text_file", "comparison_arrays", "export", "finding_record", "gather",
    "heatmap_pictures", "label_words", "verify_export", "write_csv", "write_html", "write_json", "write_pdf",
]
