"""Sealed exports: the manifest written beside every export, its optional OpenSSH signatures, and the check
behind ``inspector report verify``.

Beside ``EXPORT`` an export writes ``EXPORT.manifest.json``: the sha256 of the export and of each image embedded
in it, the casebook file's sha256 and label-chain head, whether ``casebook verify`` passed, the filters used and
the time. Signed (``--sign KEY``), it also writes ``EXPORT.sig`` (the export's signature) and
``EXPORT.manifest.json.sig`` (the manifest's), both in ``ssh-keygen -Y sign`` format, namespace ``file``, so that
stock OpenSSH checks them too. No Qt here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector import sshsig
from inspector.errors import UserError
from inspector.fileio import sha256_and_size as file_digest
from inspector.report.data import Picture, ReportData

MANIFEST_FORMAT = "Memorization Inspector export manifest"
MANIFEST_VERSION = 1


def manifest_path(export: Path) -> Path:
    return export.with_name(export.name + ".manifest.json")


def signature_path(export: Path) -> Path:
    return export.with_name(export.name + ".sig")


def manifest_signature_path(export: Path) -> Path:
    return export.with_name(export.name + ".manifest.json.sig")


def sidecars(export: Path) -> list[Path]:
    """The files an export writes beside itself (the signatures only when signed)."""
    return [manifest_path(export), signature_path(export), manifest_signature_path(export)]


def build_manifest(export: Path, fmt: str, digest: str, size: int, data: ReportData, embedded: Sequence[Picture],
                   signer: Any = None) -> dict[str, Any]:
    """The manifest of an export written to ``export`` (whose bytes hash to ``digest``)."""
    images = []
    for i, p in enumerate(embedded, 1):
        images.append({"n": i, "what": p.what, "sha256": p.sha256, "bytes": len(p.png)})
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "export": {"file": export.name, "format": fmt, "bytes": size, "sha256": digest},
        "images": images,
        "images_note": ("each image as embedded: the PNG inside a data: URI of the HTML" if fmt == "html" else
                        "each image as given to the PDF writer (PNG bytes; the PDF stores their pixels)"
                        if fmt == "pdf" else "this format embeds no images"),
        "casebook": {"file": data.casebook_name, "sha256": data.casebook_sha256,
                     "chain_head": data.chain_head, "chain_events": data.chain_events,
                     "schema_version": data.schema_version, "verified": data.verified,
                     "failing_findings": data.check.failing_findings},
        "filters": data.selection.as_dict(),
        "filters_in_words": data.selection.words(),
        "findings": [s.id for s in data.summaries],
        "matter": data.options.matter, "claimant": data.options.claimant, "author": data.options.author,
        "exported_at": data.exported_at_utc,
        "exported_at_local": data.exported_at,
        "versions": data.versions,
        "signature": None,
    }
    if signer is not None:
        public = sshsig.raw_public_key(signer)
        manifest["signature"] = {
            "file": signature_path(export).name, "manifest_signature": manifest_signature_path(export).name,
            "format": "SSHSIG (ssh-keygen -Y sign)", "namespace": sshsig.NAMESPACE,
            "public_key": sshsig.public_key_line(public), "fingerprint": sshsig.fingerprint(public),
        }
    return manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


# --- checking ---------------------------------------------------------------------------------------------------


@dataclass
class SealCheck:
    """The outcome of :func:`verify_export`: what holds (``passed``) and what does not (``failed``), in words."""

    export: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signer: str | None = None  # the fingerprint of the key that signed, when a signature checked out

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"export": str(self.export), "ok": self.ok, "passed": self.passed, "failed": self.failed,
                "warnings": self.warnings, "signer": self.signer,
                "casebook": self.manifest.get("casebook"), "findings": self.manifest.get("findings"),
                "exported_at": self.manifest.get("exported_at")}


def verify_export(export: str | Path, key: str | Path | None = None, casebook: str | Path | None = None) -> SealCheck:
    """Check an export against its manifest, and its signatures when there are any (or ``key`` asks for them).

    With ``casebook``, also check that this casebook still holds the label-event chain the export was made from
    (its event number ``chain_events`` has the hash ``chain_head``: later events may follow, none may be gone)
    and that it passes ``casebook verify``.

    Raises
    ------
    UserError
        When the export or its manifest cannot be read at all, or ``key`` is no Ed25519 public key.
    """
    export = Path(export)
    if not export.is_file():
        raise UserError(f"no export at {export}: give the path of an exported report (.html, .pdf, .csv, .json)")
    mpath = manifest_path(export)
    try:
        raw_manifest = mpath.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{export} has no manifest beside it ({mpath.name}): only exports written by"
                        " `inspector casebook export` can be checked") from None
    except OSError as exc:
        raise UserError(f"cannot read {mpath}: {exc.strerror or exc}") from None
    trusted = sshsig.load_public_key(key) if key is not None else None
    check = SealCheck(export)
    try:
        manifest = json.loads(raw_manifest)
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError("not an export manifest")
    except ValueError as exc:
        check.failed.append(f"the manifest {mpath.name} is damaged or not a manifest ({exc})")
        return check
    check.manifest = manifest
    _check_signatures(check, export, raw_manifest, trusted)
    _check_bytes(check, export)
    if casebook is not None:
        _check_casebook(check, Path(casebook))
    return check


def _check_casebook(check: SealCheck, path: Path) -> None:
    """Does the casebook still hold the chain the export names? (An anchor outside the file: removing the
    newest events and rewriting the recorded head inside the casebook cannot hide from it.)"""
    from inspector.casebook import Casebook

    recorded = check.manifest.get("casebook") or {}
    head, events = recorded.get("chain_head"), recorded.get("chain_events")
    with Casebook.open(path, create=False, readonly=True) as book:
        now_head, now_events = book.chain_head()
        at = book.event_hash_at(int(events)) if isinstance(events, int) and events > 0 else None
        report = book.verify()
    if not isinstance(events, int) or not head:
        check.failed.append("the manifest names no label-chain head to compare the casebook with")
    elif events == 0 or at == head:
        later = now_events - events
        check.passed.append(f"{path.name} still holds the label chain the export was made from (event {events} is"
                            f" {head})" + (f"; {later} events were added since" if later > 0 else ""))
    else:
        check.failed.append(f"{path.name} no longer holds the label chain the export was made from: its event"
                            f" {events} is {at or 'missing'}, the export names {head} (events were removed or"
                            f" rewritten since; the casebook now ends at event {now_events}, {now_head})")
    if report.ok:
        check.passed.append(f"{path.name}: {report.summary()}")
    else:
        names = ", ".join(str(i) for i in report.failing_findings) or "the file as a whole"
        check.failed.append(f"{path.name} fails casebook verify ({names}): {report.summary()}")


def _check_signatures(check: SealCheck, export: Path, raw_manifest: bytes, trusted: bytes | None) -> None:
    recorded = check.manifest.get("signature")
    sig_path, msig_path = signature_path(export), manifest_signature_path(export)
    if not recorded and not sig_path.exists() and not msig_path.exists():
        if trusted is not None:
            check.failed.append("the export is not signed, but --key asks for a signature")
        else:
            check.warnings.append("the export is not signed: the manifest shows it is unchanged, but someone who"
                                  " changes both could hide it (sign exports with --sign KEY)")
        return
    signer = None
    for what, path, message in (("the export", sig_path, None), ("the manifest", msig_path, raw_manifest)):
        try:
            armored = path.read_text(encoding="ascii")
        except FileNotFoundError:
            check.failed.append(f"the signature of {what} ({path.name}) is missing")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            check.failed.append(f"the signature of {what} ({path.name}) cannot be read ({exc})")
            continue
        body = message if message is not None else export.read_bytes()
        try:
            sig = sshsig.verify(body, armored, public_key=trusted)
        except sshsig.SignatureError as exc:
            check.failed.append(f"the signature of {what} ({path.name}) fails: {exc}")
            continue
        signer = sig.fingerprint
        check.passed.append(f"{what} is signed by the key {sig.fingerprint} ({path.name})")
    if signer is not None:
        check.signer = signer
        named = (recorded or {}).get("fingerprint") if isinstance(recorded, dict) else None
        if named and named != signer:
            check.failed.append(f"the manifest names the key {named} but the signature was made with {signer}")
        if trusted is None:
            check.warnings.append(f"the signing key {signer} was not compared with a key you trust: pass"
                                  " --key KEY.pub")
        else:
            check.passed.append(f"the signing key is the one given with --key ({signer})")


def _check_bytes(check: SealCheck, export: Path) -> None:
    recorded = check.manifest.get("export") or {}
    digest, size = file_digest(export)
    if recorded.get("file") not in (None, export.name):
        check.warnings.append(f"the manifest was written for a file named {recorded.get('file')!r}")
    if digest == recorded.get("sha256"):
        check.passed.append(f"the export is byte for byte the one written at {check.manifest.get('exported_at')}"
                            f" (sha256 {digest})")
        images = check.manifest.get("images") or []
        if images:
            check.passed.append(f"its {len(images)} embedded images are as listed in the manifest")
        return
    check.failed.append(f"the export was changed after it was written: sha256 {digest} ({size} bytes), the"
                        f" manifest says {recorded.get('sha256')} ({recorded.get('bytes')} bytes)")
    if recorded.get("format") == "html":
        _name_changed_images(check, export)


_DATA_URI = re.compile(rb'src="data:image/png;base64,([A-Za-z0-9+/=]*)"')


def _name_changed_images(check: SealCheck, export: Path) -> None:
    """For an HTML export: which embedded images differ from the manifest's list (by position)."""
    listed = check.manifest.get("images") or []
    found = []
    for m in _DATA_URI.finditer(export.read_bytes()):
        try:
            found.append(hashlib.sha256(base64.b64decode(m.group(1), validate=True)).hexdigest())
        except ValueError:
            found.append("(not base64)")
    changed = [item for item, digest in zip(listed, found, strict=False) if item.get("sha256") != digest]
    for item in changed:
        check.failed.append(f"image {item.get('n')} ({item.get('what')}) was changed")
    if len(found) != len(listed):
        check.failed.append(f"the export holds {len(found)} images, the manifest lists {len(listed)}")
    if not changed and len(found) == len(listed):
        check.failed.append("every embedded image is as listed: the text around them was changed")
