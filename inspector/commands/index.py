"""``inspector index build|info|query``: build a training index, describe it, find an image's nearest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspector.commands import (
    add_timeout_option,
    casebook_file,
    neighbour_count,
    nonempty,
    print_json,
    whole_number,
)
from inspector.commands.progress import TerminalProgress
from inspector.errors import UserError, check_writable_folder
from inspector.roles import describe_index, origin_words, role_words


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build, describe and search an index of training or reference images",
                       description="A local, searchable index of images: the model's training set, or a "
                                   "reference collection (an artist's portfolio, a stock library).")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", parser_class=type(p))
    isub.required = True

    b = isub.add_parser("build", help="index a folder of images or img2dataset output",
                        description="Index a folder tree of images (captions from sidecar .json/.txt files, else "
                                    "the file name) or img2dataset output (the files layout, .tar shards or "
                                    ".parquet files). Progress goes to stderr. A build that finds no usable image "
                                    "fails (exit 2) and leaves no index behind.")
    b.add_argument("src", type=Path, metavar="SRC",
                   help="image folder, img2dataset output folder, a .tar shard or a .parquet file")
    where = b.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, metavar="DIR", help="the index folder (new or empty)")
    where.add_argument("--add-to", type=Path, metavar="DIR", dest="add_to",
                       help="append SRC (new folders or img2dataset shards) to the index in DIR: exact duplicates "
                            "are counted across old and new, the compressed index is not trained again "
                            "(unless --retrain); run it again to continue an interrupted addition")
    b.add_argument("--role", choices=("training", "reference"), default=None,
                   help="training: the model's training set (default); reference: a collection to check against "
                        "(an artist's portfolio, a stock library, a client's images). Every result says which.")
    b.add_argument("--resume", action="store_true", help="continue an interrupted build in DIR")
    b.add_argument("--size", type=int, default=None, metavar="PX",
                   help="side of the comparison square in pixels (default 256; the demo model uses 32)")
    b.add_argument("--clip", metavar="MODEL", default=None,
                   help="also store image embeddings (the likeness signal) from a local CLIP folder or cached "
                        "Hub id, or a Stable Diffusion 1.x folder (its safety checker's CLIP tower)")
    b.add_argument("--allow-pickle", action="store_true",
                   help="--clip: accept a model whose weights are only a pickle (pytorch_model.bin), read with "
                        "torch's weights-only loader (refused by default: unpickling can run code)")
    b.add_argument("--workers", type=whole_number(1, 1024, "the number of workers"), default=None, metavar="N",
                   help="decoding processes (default: one per CPU core)")
    pixels = b.add_mutually_exclusive_group()
    pixels.add_argument("--store-pixels", dest="store_pixels", action="store_true", default=None,
                        help="keep canonical pixels for exact re-ranking (default when --size <= 128)")
    pixels.add_argument("--no-store-pixels", dest="store_pixels", action="store_false",
                        help="decode candidates again from their files at query time (saves disk)")
    b.add_argument("--compressed-above", type=whole_number(0, 10**12, "--compressed-above"), default=None,
                   metavar="N", dest="compressed_above",
                   help="past N images, search a compressed FAISS index (PCA + inverted lists + product "
                        "quantization, read memory-mapped) whose candidate pool is re-ranked exactly; default: when "
                        "the flat index would take more than a quarter of this machine's RAM")
    b.add_argument("--retrain", action="store_true",
                   help="train the compressed index again on a sample of all images (with --add-to)")
    b.add_argument("--embeddings", type=Path, metavar="DIR", default=None,
                   help="a clip-retrieval output folder (img_emb/*.npy with metadata/*.parquet): its image "
                        "embeddings become the semantic signal, matched to the images by url, path or key")
    b.add_argument("--embeddings-model", metavar="NAME", default=None, dest="embeddings_model",
                   help="the CLIP model that made --embeddings (a local folder, a cached Hub id, or "
                        "clip-retrieval's name such as ViT-B/32): queries are embedded with it when it is on "
                        "this machine")
    b.add_argument("--chunk-size", type=int, default=64, help=argparse.SUPPRESS)
    b.add_argument("--json", action="store_true", help="print the build report as one JSON object on stdout")
    b.set_defaults(func=run_build)

    i = isub.add_parser("info", help="what an index holds",
                        description="Unique images, sources, skipped files, sizes and settings of an index.")
    i.add_argument("dir", type=Path, metavar="DIR")
    i.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    i.set_defaults(func=run_info)

    q = isub.add_parser("query", help="is this image in the index? the nearest indexed images of image files",
                        usage="%(prog)s [DIR] IMAGE [IMAGE ...] [--index DIR] [--record CASEBOOK] [options]",
                        description="Find the k nearest indexed images (training or reference) of each IMAGE "
                                    "by tiled l2, with l2, SSIM and calibrated l2, each with its caption, source "
                                    "file and url, and the suggested verdict; compared at the smaller of the "
                                    "image's size and the index's comparison size (never enlarged). The index is "
                                    "--index DIR, else the first argument. Each IMAGE is decoded as the index "
                                    "decoded its own files, so an indexed file finds itself at distance 0.")
    q.add_argument("paths", type=Path, nargs="+", metavar="IMAGE",
                   help="the image files to search for (after the index folder DIR when --index is not given)")
    q.add_argument("--index", metavar="DIR", default=None, type=nonempty("an index: demo or an index folder"),
                   help="the index to search: an index folder, or demo (the demo model's training set)")
    q.add_argument("--record", metavar="CASEBOOK", type=casebook_file, default=None,
                   help="also record each image in this casebook as an unlabeled finding of kind \"query\" "
                        "(file name, sha256 of its bytes, size, the index searched); the same image searched in "
                        "the same index again is the finding already there")
    add_timeout_option(q)
    q.add_argument("--k", type=neighbour_count, default=4, help="neighbours per image (default 4)")
    q.add_argument("--rank-by", choices=("tiled-l2", "l2", "semantic"), default="tiled-l2",
                   help="order by tiled l2 (default: the suggested verdict's metric), by l2 (Carlini et al.'s "
                        "ranking) or by CLIP similarity (index built with --clip)")
    q.add_argument("--prompt", metavar="TEXT", default=None,
                   help="the prompt that made the images: indexed images whose caption equals or closely matches "
                        "it are always compared exactly (Carlini et al.) and listed as caption matches")
    q.add_argument("--json", action="store_true",
                   help="print one JSON list on stdout: one object per IMAGE, in order, each with \"index\" "
                        "(the index searched), \"neighbours\", \"sha256\", \"width\", \"height\", "
                        "\"suggested_verdict\" and \"suggestion_reason\" (with --record also \"finding_id\"; with "
                        "--prompt also \"matching_captions\" and \"caption_matched\": the exact distances to "
                        "those captions' images)")
    q.set_defaults(func=run_query)


def show_build(progress: TerminalProgress) -> Callable[[Any], None]:
    """A build's progress events on the terminal, each skipped file a line of its own."""

    def show(event: Any) -> None:
        for skipped in event.newly_skipped:
            progress.note(f"skipped {skipped.source}: {skipped.reason}")
        progress(event)

    return show


def run_build(args: argparse.Namespace) -> int:
    from inspector.training_index import build_index

    if args.allow_pickle and args.clip is None:
        raise UserError("--allow-pickle is only for --clip MODEL (a CLIP model with pickle weights)")
    if args.retrain and args.add_to is None:
        raise UserError("--retrain is for --add-to DIR (a new build trains its compressed index anyway)")
    if args.add_to is not None and args.resume:
        raise UserError("--add-to continues an interrupted addition by itself: leave out --resume")
    out = args.out if args.out is not None else args.add_to
    check_writable_folder(out)  # a read-only or full disk is named before any image is read
    shown = TerminalProgress()
    try:
        report = build_index(args.src, out, resume=args.resume, comparison_size=args.size, clip=args.clip,
                             workers=args.workers, chunk_size=args.chunk_size, store_pixels=args.store_pixels,
                             progress=show_build(shown), role=args.role, allow_pickle=args.allow_pickle,
                             add_to=args.add_to is not None, compressed_above=args.compressed_above,
                             retrain=args.retrain, embeddings=args.embeddings, embeddings_model=args.embeddings_model)
    except KeyboardInterrupt:
        shown.close()
        again = f"--add-to {out}" if args.add_to is not None else f"--out {out} --resume"
        print(f"\nthe build stopped; continue it with: inspector index build {args.src} {again}", file=sys.stderr)
        raise
    finally:
        shown.close()
    if report.notes_total:
        # Unreadable caption sidecars do not stop an image, but the person should hear of them now.
        first = "; ".join(report.notes[:3])
        more = f"; and {report.notes_total - 3} more" if report.notes_total > 3 else ""
        print(f"{report.notes_total} caption sidecars could not be read, so those images have no caption from "
              f"them (all in {Path(report.index_dir) / 'build_report.json'}): {first}{more}", file=sys.stderr)
    if args.json:
        print_json(report.as_dict())
    else:
        words = role_words(report.role)
        print(f"indexed {report.unique_images} unique images from {report.sources} files "
              f"({report.duplicate_sources} exact duplicates) into {report.index_dir} as {words.index_a}")
        print(f"content hash  {report.content_hash}")
        if report.resumed:
            print(f"resumed: {report.files_already_indexed} files were already indexed, {report.new_images} "
                  "new images added")
        if report.added:
            print(f"added {report.source}: {report.new_images} new images ({report.files_already_indexed} files "
                  "were indexed already)")
        fi = report.feature_index
        if fi.get("kind") == "compressed":
            trained = "trained now" if fi.get("trained_now") else "trained before, not again"
            print(f"feature index compressed ({fi['factory']}, {trained}): {fi['pool']} candidates re-ranked "
                  f"exactly, {fi['nprobe']} lists probed; {_kept(fi.get('recall'), fi.get('queries'))}")
        if report.skipped:
            print(f"skipped {len(report.skipped)} files (reasons also in {Path(report.index_dir) / 'build_report.json'}):")
            for s in report.skipped[:50]:
                print(f"  {s.source}: {s.reason}")
            if len(report.skipped) > 50:
                print(f"  ... and {len(report.skipped) - 50} more in build_report.json")
        print(f"{report.rate:.0f} files/s, {report.seconds:.1f} s")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from inspector.training_index import TrainingIndex

    with TrainingIndex.open(args.dir, semantic=False) as index:
        info = index.info()
    if args.json:
        print_json(info)
        return 0
    words = role_words(info["role"])
    print(f"index         {info['path']}  (id {info['index_id']})")
    print(f"role          {words.role} ({words.index_a})")
    print(f"source        {' + '.join(info.get('source_roots') or [info['source']])}")
    print(f"images        {info['unique_images']} unique, from {info['sources']} files "
          f"({info['duplicate_sources']} exact duplicates; {info['duplicated_images']} images occur more than once)")
    for top in info["most_duplicated"]:
        print(f"              {top['duplicate_count']:>6} copies: {top['caption'] or top['source']}")
    kinds = ", ".join(f"{n} {k}" for k, n in info["skipped_by_kind"].items())
    print(f"skipped       {info['skipped']} files{f' ({kinds})' if kinds else ''}")
    sizes = info["image_sizes"]
    if sizes["min_width"] is not None:
        print(f"image sizes   {sizes['min_width']}-{sizes['max_width']} x {sizes['min_height']}-{sizes['max_height']} px")
    print(f"comparison    {info['comparison_size']} px, pixels {'stored' if info['pixels_stored'] else 'read from the source files'}")
    print(f"feature       {info['feature']['name']} {info['feature']['grid']}x{info['feature']['grid']}x3 "
          f"({info['feature']['dim']} values), FAISS {info['faiss']['type']}")
    fa = info["faiss"]
    if fa.get("compressed"):
        cal = fa.get("calibration") or {}
        print(f"              compressed ({fa['factory']}, {fa['code_bytes']} bytes an image): {fa['pool']} "
              f"candidates re-ranked exactly, {fa['nprobe']} of {fa['nlist']} lists probed; "
              f"{_kept(cal.get('recall'), cal.get('queries'))}")
    if info["semantic"]:
        print(f"semantic      CLIP {info['semantic']['model']} ({info['semantic']['dim']} values)")
    caps = info["captions"]
    print(f"captions      {caps['distinct']} distinct, " + (
        "full-text search" if caps["full_text_search"] else
        "no caption index (built by an older version: `index build SRC --out DIR --resume` adds it)"))
    b = info["bytes"]
    print(f"disk          {_mb(b['total'])} (database {_mb(b['database'])}, features {_mb(b['features'])}, "
          f"pixels {_mb(b['pixels'])}, FAISS {_mb(b['faiss'])}, thumbnails {_mb(b['thumbnails'])})")
    print(f"built         {info['updated']}")
    print(f"content hash  {info['content_hash']}  (sha256 over the sorted sha256 of every unique image)")
    return 0


def _kept(recall: float | None, queries: int | None) -> str:
    """How often a compressed index's calibration kept near copies' sources, in words."""
    if recall is None:
        return "not calibrated (no indexed image could be read: the widest settings are used)"
    return f"near copies' sources kept {recall * 100:.1f}% of {queries} tries"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _query_target(args: argparse.Namespace) -> tuple[str, list[Path]]:
    """The index searched and the images: ``--index DIR IMAGE...`` or ``DIR IMAGE...``."""
    paths = list(args.paths)
    if args.index is not None:
        return args.index, paths
    if len(paths) < 2:
        raise UserError("give the index and the images to search for: inspector index query IMAGE... --index DIR "
                        "(or DIR IMAGE...)")
    return str(paths[0]), paths[1:]


def _open_query_index(source: str, semantic: bool | None) -> Any:
    """The index to search: a folder, or the demo's (built on first use, its progress on stderr)."""
    from inspector.resources import DEMO
    from inspector.training_index import TrainingIndex

    if source == DEMO and not Path(source).exists():
        from inspector.session import open_index

        shown = TerminalProgress()
        try:
            return open_index(DEMO, progress=shown)
        finally:
            shown.close()
    return TrainingIndex.open(source, semantic=semantic)


def run_query(args: argparse.Namespace) -> int:
    from inspector import metrics
    from inspector.image_query import inspect_queries, load_query, record_query

    source, images = _query_target(args)
    for image in images:
        if not image.is_file():
            raise UserError(f"{image}: no such image file" if not image.is_dir() else
                            f"{image} is a folder, not an image file")
    if args.record is not None:
        from inspector.casebook import Casebook

        with Casebook.open(args.record) as book:  # one that cannot be written is named before any search
            book.check_writable()
    with _open_query_index(source, True if args.rank_by == "semantic" else None) as index:
        queries = [load_query(index, image) for image in images]  # a bad image: one line, exit 2, nothing done
        items = inspect_queries(index, source, queries, args.k, rank_by=args.rank_by, prompts=args.prompt)
        identity = index.identity()
        matched_ids, captions = index.caption_candidates(args.prompt) if args.prompt else ([], [])
        matched = [index.compare(q.pixels, matched_ids) for q in queries] if len(matched_ids) else \
            [[] for _ in images]
    recorded: list[tuple[int, bool] | None] = [None] * len(items)
    if args.record is not None:
        from inspector.casebook import Casebook

        with Casebook.open(args.record) as book:
            recorded = [record_query(book, item) for item in items]

    def plain(n: Any) -> dict[str, Any]:
        return {k: v for k, v in n.as_dict().items() if k not in ("thumbnail_png", "pixels_png")}

    if args.json:
        rows = []
        for image, item, caption_matched, done in zip(images, items, matched, recorded, strict=True):
            neighbours, prov = item.neighbours, item.provenance
            rows.append({"image": str(image), "index": identity,
                         "comparison_size": neighbours[0].comparison_size if neighbours else None,
                         "neighbours": [plain(n) for n in neighbours],
                         "sha256": prov["file_sha256"], "width": prov["width"], "height": prov["height"],
                         "format": prov["format"], "suggested_verdict": item.suggestion.verdict,
                         "suggestion_reason": item.suggestion.reason,
                         **({"finding_id": done[0], "already_recorded": done[1]} if done is not None else {}),
                         **({"matching_captions": captions,
                             "caption_matched": [plain(n) for n in caption_matched]}
                            if args.prompt is not None else {})})
        print_json(rows)
        return 0
    words = role_words(identity["role"])
    print(f"searched {describe_index(identity)}")
    if args.prompt is not None:
        print(f"captions matching the prompt: {len(captions)} ({len(matched_ids)} {words.images}, each compared "
              "exactly)" if captions else "no caption matches the prompt")
    for image, item, caption_matched, done in zip(images, items, matched, recorded, strict=True):
        prov, neighbours = item.provenance, item.neighbours
        print(f"{image}: {prov['width']} x {prov['height']} px, sha256 {prov['file_sha256'][:16]}…; suggested "
              f"{item.suggestion.verdict}: {item.suggestion.reason}")
        for n in caption_matched:
            print(f"{image}: {words.image} captioned {n.caption!r}: {metrics.describe_tiled_l2(n.tiled_l2)}, "
                  f"l2 {n.l2:.4f} (file {n.source})")
        size = neighbours[0].comparison_size if neighbours else None
        print(f"{image}: nearest {words.images} by {args.rank_by.replace('-', ' ')}, compared at {size} x {size} px")
        for n in neighbours:
            cal = "n/a" if n.calibrated_l2 is None else f"{n.calibrated_l2:.2f}"
            copies = f", {words.times(n.duplicate_count)}" if n.duplicate_count > 1 else ""
            print(f"  {n.rank}. l2 {n.l2:.4f}  {metrics.describe_tiled_l2(n.tiled_l2)}  SSIM {n.ssim:.3f}  "
                  f"calibrated l2 {cal}{copies}")
            print(f"     {n.caption!r}" + (f" (caption from {n.caption_source})" if n.caption_source == "the file name"
                                            else ""))
            print(f"     file {n.source}" + (f"\n     {origin_words(n.url)}" if n.url else ""))
        if done is not None:
            fid, already = done
            print(f"{image}: " + (f"already in {args.record} as finding #{fid} (kind query)" if already else
                                  f"recorded in {args.record} as finding #{fid} (kind query, unlabeled)"))
    return 0
