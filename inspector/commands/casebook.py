"""``inspector casebook list | label | export | verify | merge``: work with a casebook file from the command line.

Exit 0 on success, 2 on bad input (a missing or refused file, an unknown finding: one line on stderr), and for
``verify`` 1 when a check fails. The casebook modules are imported when a command runs, so that the command
line starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.commands import add_timeout_option, finding_id, print_json, run_id
from inspector.findings import LABELS, UNLABELED

LABEL_CHOICES = LABELS
LIST_LABEL_CHOICES = (*LABELS, UNLABELED)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "casebook", help="list, label, export and verify the findings of a casebook",
        description="Work with a casebook: the SQLite file of findings, their nearest training images and labels.")
    actions = p.add_subparsers(dest="casebook_action", metavar="ACTION", required=True)

    a = actions.add_parser("list", help="list runs and findings, optionally by label, run or matching text",
                           description="List the runs of a casebook (every inspection, whatever it found) and its"
                                       " findings, oldest first.")
    a.add_argument("file", type=Path, metavar="FILE", help="the casebook (.db)")
    a.add_argument("--label", choices=LIST_LABEL_CHOICES, help="only findings with this label")
    a.add_argument("--search", metavar="TEXT",
                   help="only findings whose prompt, notes or neighbour captions contain every word of TEXT")
    a.add_argument("--run", type=run_id, metavar="ID", help="only the findings this run made")
    a.add_argument("--runs", action="store_true", help="list the runs only (with --json: a list of runs)")
    a.add_argument("--json", action="store_true",
                   help="print one JSON list of findings, each with its id (with --runs: of runs)")
    add_timeout_option(a)
    a.set_defaults(func=run_list)

    a = actions.add_parser("label", help="label one finding", description=(
        "Label a finding. The old label stays in its history; the new one is a new event."))
    a.add_argument("file", type=Path, metavar="FILE", help="the casebook (.db)")
    a.add_argument("finding_id", type=finding_id, metavar="FINDING_ID", help="the finding's id (see casebook list)")
    a.add_argument("label", choices=LABEL_CHOICES, metavar="|".join(LABELS),
                   help="memorized: a near copy of a training image; likeness-only: the same subject, no near"
                        " copy; novel: neither")
    a.add_argument("--note", default="", metavar="TEXT", help="why; becomes the finding's notes")
    a.add_argument("--reviewer", default=None, metavar="NAME",
                   help="who is labeling (required: a label is a person's judgement; default $INSPECTOR_REVIEWER)")
    add_timeout_option(a)
    a.set_defaults(func=run_label)

    a = actions.add_parser("export", help="write findings as a PDF or HTML report, CSV or JSON", description=(
        "Export findings (all, or those the filters choose; every filter given must hold). PDF and HTML are"
        " reports for a reviewer or a court bundle: a cover page, one summary page per prompt, each finding on its"
        " own page(s) with its images, distances, heatmaps, label history and full provenance. CSV is one row per"
        " finding; JSON every field but the image bytes. Beside PATH a manifest (PATH.manifest.json) records the"
        " sha256 of the export and of each image in it, the casebook's sha256 and chain head and the filters;"
        " --sign also writes OpenSSH signatures (PATH.sig, PATH.manifest.json.sig). The files appear only when"
        " complete; existing files are replaced only with --overwrite, and the casebook itself never is."))
    a.add_argument("file", type=Path, metavar="FILE", help="the casebook (.db)")
    a.add_argument("--format", required=True, choices=("html", "pdf", "csv", "json"), dest="fmt")
    a.add_argument("--out", required=True, type=Path, metavar="PATH", help="the file to write")
    a.add_argument("--overwrite", action="store_true",
                   help="replace PATH (and its manifest and signatures) if they exist (never the casebook itself)")
    a.add_argument("--id", type=finding_id, nargs="+", metavar="N", dest="ids", help="only these findings")
    a.add_argument("--label", choices=LIST_LABEL_CHOICES, help="only findings with this label")
    a.add_argument("--prompt", metavar="TEXT", help="only findings of exactly this prompt")
    a.add_argument("--run", type=run_id, metavar="ID", dest="run_id", help="only the findings this run made")
    a.add_argument("--since", metavar="DATE",
                   help="only findings recorded at or after DATE (2026-11-01, or 2026-11-01T09:30 in your time"
                        " zone, or ...Z for UTC)")
    a.add_argument("--sign", type=Path, metavar="KEY",
                   help="sign the export with this OpenSSH Ed25519 private key (ssh-keygen -t ed25519); a"
                        " passphrase is read from $INSPECTOR_KEY_PASSPHRASE or asked on the terminal")
    a.add_argument("--title", metavar="TEXT", help="the report's title (default: Casebook report: FILE)")
    a.add_argument("--matter", default="", metavar="TEXT", help="the matter the report is for (cover page)")
    a.add_argument("--claimant", default="", metavar="TEXT", help="the claimant (cover page)")
    a.add_argument("--author", default="", metavar="NAME", help="who prepared the report (cover page)")
    add_timeout_option(a)
    a.set_defaults(func=run_export)

    a = actions.add_parser("verify", help="check that nothing was changed or damaged", description=(
        "Check the SQLite file, every stored image against its sha256, the label-event hash chain and the"
        " current labels. Exit 0 when all is well, 1 when a check fails (each failing finding is named)."))
    a.add_argument("file", type=Path, metavar="FILE", help="the casebook (.db)")
    add_timeout_option(a)
    a.set_defaults(func=run_verify)

    _add_reproduce(actions)
    _add_merge(actions)


def _add_merge(actions: argparse._SubParsersAction) -> None:
    a = actions.add_parser("merge", help="merge casebooks labeled by several reviewers; report their agreement",
                           description=(
                               "Merge two or more casebooks (copies labeled by different people, or one file"
                               " labeled in turns) into a new one: every finding once, every label event with its"
                               " reviewer and time, every run. Where reviewers disagree the finding goes back to"
                               " unlabeled by an event of its own (reviewer 'casebook merge (reviewers"
                               " disagree)'), so no label replaces another silently; the window's Review tab"
                               " walks those findings to adjudicate them. Prints the disagreements and the"
                               " agreement: Cohen's kappa for two reviewers, Krippendorff's alpha for more."))
    a.add_argument("files", type=Path, nargs="+", metavar="FILE", help="the casebooks to merge (two or more)")
    a.add_argument("--out", required=True, type=Path, metavar="FILE", help="the merged casebook (a new file)")
    a.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never an input)")
    a.add_argument("--json", action="store_true",
                   help="print one JSON object: counts, disagreements (finding_id, labels per reviewer),"
                        " agreement (measure, value)")
    a.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from inspector.casebook import merge_casebooks

    report = merge_casebooks(args.files, args.out, overwrite=args.overwrite)
    if args.json:
        print_json(report.as_dict())
        return 0
    print(f"wrote {args.out}: {report.findings} findings ({report.findings_in_several} in more than one input),"
          f" {report.runs} runs, {report.events} events")
    n = len(report.disagreements)
    print(f"{n} finding{'' if n == 1 else 's'} where reviewers disagree" + (":" if n else ""))
    for d in report.disagreements:
        print("  " + _printable(d.in_words()))
    print("agreement: " + _printable(report.agreement.in_words()))
    return 0


def _add_reproduce(actions: argparse._SubParsersAction) -> None:
    a = actions.add_parser("reproduce", help="regenerate a finding from its record and record the outcome",
                           description=(
                               "Regenerate a finding from the provenance in its stored image, compare the pixels"
                               " and put the outcome on the record (a 'reproduce' event in the hash chain: time,"
                               " machine, versions, maximum pixel difference, pixel hash), which reports list."
                               " Exit 0 when the pixels match, 1 when they do not, 2 when it cannot run."))
    a.add_argument("file", type=Path, metavar="FILE", help="the casebook (.db)")
    a.add_argument("finding_id", type=finding_id, metavar="FINDING_ID", help="the finding's id (see casebook list)")
    a.add_argument("--model", metavar="SRC", help="another copy of the model (default: the one the record names)")
    a.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    a.add_argument("--reviewer", default=None, metavar="NAME",
                   help="who reproduced it (default $INSPECTOR_REVIEWER)")
    a.add_argument("--json", action="store_true", help="print the recorded outcome as one JSON object")
    a.set_defaults(func=run_reproduce)


def _open(path: Path, readonly: bool = True):
    from inspector.casebook import Casebook

    return Casebook.open(path, create=False, readonly=readonly)


def _printable(text: str, width: int | None = None) -> str:
    """Text safe for a terminal (no control characters or escape sequences), cut to ``width`` characters."""
    text = "".join(c if c.isprintable() else " " for c in text)
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _run_line(run) -> str:
    when = (run.started_at or "")[:16].replace("T", " ")
    who = _printable(run.reviewer, 12) if run.reviewer else "—"
    return f"run #{run.id:<4} {when}  {run.kind:<7}  {who:<12}  {_printable(run.in_words())}"


def run_list(args: argparse.Namespace) -> int:
    # Findings narrowed by label or text leave the runs out (runs have no label or text to match).
    show_runs = args.runs or args.run is not None or not (args.label or args.search)
    with _open(args.file) as book:
        if args.run is not None:
            runs = [book.get_run(args.run)]
        else:
            runs = book.runs() if show_runs else []
        found = [] if args.runs else book.findings(label=args.label, text=args.search, run_id=args.run)
    if args.json:
        print_json([r.as_dict() for r in runs] if args.runs else [s.as_dict() for s in found])
        return 0
    if show_runs:
        print(f"{len(runs)} run{'' if len(runs) == 1 else 's'}:" if runs else "no runs yet")
        for r in runs:
            print("  " + _run_line(r))
        if args.runs:
            return 0
        print()
    if not found:
        print("no findings" + (" match" if args.label or args.search or args.run is not None else " yet"))
        return 0
    print(f"{'id':>6}  {'label':<13}  {'suggested':<10}  {'tiled l2':>8}  {'seed':>10}  {'reviewer':<12}  prompt")
    per_label: dict[str, int] = {}
    for s in found:
        tiled = "" if s.nearest_tiled_l2 is None else f"{s.nearest_tiled_l2:.3f}"
        print(f"{s.id:>6}  {s.label:<13}  {s.suggested_verdict or '':<10}  {tiled:>8}  {s.seed_text:>10}  "
              f"{_printable(s.reviewer, 12):<12}  {_printable(s.subject, 70)}")
        per_label[s.label] = per_label.get(s.label, 0) + 1
    parts = ", ".join(f"{n} {label}" for label, n in sorted(per_label.items()))
    print(f"{len(found)} findings ({parts})")
    return 0


def _reviewer(given: str | None) -> str:
    from inspector.evidence import default_reviewer

    return (given or "").strip() or default_reviewer()


def run_label(args: argparse.Namespace) -> int:
    from inspector.errors import UserError
    from inspector.evidence import REVIEWER_ENV

    args.reviewer = _reviewer(args.reviewer)
    if not args.reviewer:
        raise UserError(f"a label needs a reviewer: pass --reviewer NAME, or set {REVIEWER_ENV}=NAME once (for"
                        " example in your shell profile); nothing was labeled")
    with _open(args.file, readonly=False) as book:
        event = book.label(args.finding_id, args.label, reviewer=args.reviewer, note=args.note)
    who = f" by {_printable(event.reviewer)}" if event.reviewer else ""
    print(f"finding {event.finding_id}: {event.previous_label} -> {event.label}{who} (label event {event.id})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from inspector.report import ReportOptions, Selection, export

    selection = Selection(ids=args.ids, label=args.label, prompt=args.prompt, run_id=args.run_id, since=args.since)
    options = ReportOptions(title=args.title, matter=args.matter, claimant=args.claimant, author=args.author)
    with _open(args.file) as book:
        n = export(book, args.out, args.fmt, overwrite=args.overwrite, selection=selection, options=options,
                   sign=args.sign)
    signed = ", signed" if args.sign else ""
    print(f"wrote {args.out} ({n} findings, {args.fmt}{signed}) and its manifest {args.out}.manifest.json")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    with _open(args.file) as book:
        report = book.verify()
    for problem in report.problems:
        print(_printable(str(problem)))
    print(("ok: " if report.ok else "FAILED: ") + report.summary())
    return 0 if report.ok else 1


def run_reproduce(args: argparse.Namespace) -> int:
    from inspector.evidence import reproduce_finding

    with _open(args.file) as book:  # a missing casebook or finding fails here, before any model is loaded
        book.summary(args.finding_id)
    done = reproduce_finding(args.file, args.finding_id, model=args.model, device=args.device,
                             reviewer=_reviewer(args.reviewer))
    if args.json:
        print_json({"finding_id": done.finding_id, "event_id": done.event.id if done.event else None,
                    "event_hash": done.event.hash if done.event else None, **done.evidence})
    else:
        print(_printable(done.summary()))
        print(f"pixel hash (sha256 of the raw RGB bytes) {done.evidence['pixels_sha256']}")
    return 0 if done.result.match else 1
