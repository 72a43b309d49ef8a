"""``inspector report verify EXPORT [--key KEY.pub]``: is an exported report still the one the inspector wrote?

Checks the export against the manifest written beside it (its sha256, and for HTML each embedded image's), and
the OpenSSH signatures when the export was signed (``--key`` also demands that the signing key is that one).
Exit 0 when every check holds, 1 when one fails (each named), 2 when the export or its manifest cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.commands import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="check an exported report against its manifest and signature",
                       description="Work with reports exported by `inspector casebook export`.")
    actions = p.add_subparsers(dest="report_action", metavar="ACTION", required=True)
    a = actions.add_parser("verify", help="check an export's manifest and signature, naming what changed",
                           description=(
                               "Check that EXPORT is byte for byte the file the inspector wrote (its manifest,"
                               " EXPORT.manifest.json, lists its sha256 and each embedded image's), and when it"
                               " was signed, that EXPORT.sig and EXPORT.manifest.json.sig are good signatures."
                               " Exit 0 when all holds, 1 when a check fails, 2 when EXPORT or its manifest cannot"
                               " be read."))
    a.add_argument("export", type=Path, metavar="EXPORT", help="the exported report (.pdf, .html, .csv, .json)")
    a.add_argument("--key", type=Path, metavar="KEY.pub",
                   help="the signer's public key (.pub, or an allowed_signers line): the export must be signed"
                        " with it")
    a.add_argument("--casebook", type=Path, metavar="FILE",
                   help="also check that this casebook still holds the label chain the export was made from"
                        " (none of its events removed or rewritten since) and passes casebook verify")
    a.add_argument("--json", action="store_true", help="print one JSON object: ok, passed, failed, warnings")
    a.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from inspector.report.seal import verify_export

    check = verify_export(args.export, key=args.key, casebook=args.casebook)
    if args.json:
        print_json(check.as_dict())
        return 0 if check.ok else 1
    casebook = check.manifest.get("casebook") or {}
    if check.manifest:
        findings = check.manifest.get("findings") or []
        print(f"{args.export}: exported {check.manifest.get('exported_at')} from {casebook.get('file')}"
              f" ({len(findings)} findings; casebook sha256 {casebook.get('sha256')}, chain head"
              f" {casebook.get('chain_head')})")
    for line in check.passed:
        print(f"ok: {line}")
    for line in check.warnings:
        print(f"note: {line}")
    for line in check.failed:
        print(f"FAILED: {line}")
    print("verified" if check.ok else f"NOT verified: {len(check.failed)} check{'s' if len(check.failed) != 1 else ''}"
          " failed")
    return 0 if check.ok else 1
