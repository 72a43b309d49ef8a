"""The training index as a user builds and queries it: folders of real files, bad files, odd names, the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inspector import metrics
from inspector.cli import main
from inspector.findings import Neighbour
from inspector.images import canonical
from inspector.progress import Progress
from inspector.training_index import (
    BuildProgress,
    IndexBuilder,
    TrainingIndex,
    TrainingIndexError,
    build_index,
)
from inspector.training_index.features import compact_features, feature_dim

SIZE = 32  # comparison size used by most tests: small and quick, like the demo's


def picture(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A distinct, natural-ish picture: a gradient with a few shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    a, b = rng.integers(0, 256, (2, 3))
    t = np.linspace(0, 1, w)[None, :, None]
    im = Image.fromarray(((a * (1 - t) + b * t) * np.ones((h, w, 1))).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
        draw.ellipse((x0, y0, x0 + rng.integers(8, 30), y0 + rng.integers(8, 30)),
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def bomb_png() -> bytes:
    """A valid PNG header announcing 20000 x 20000 pixels: a decompression bomb, in 100 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def build(src: Path, out: Path, **kw) -> TrainingIndex:
    kw.setdefault("comparison_size", SIZE)
    kw.setdefault("workers", 1)
    build_index(src, out, **kw)
    return TrainingIndex.open(out)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Ten pictures, one of them three times (in subfolders), with .txt and .json caption sidecars."""
    src = tmp_path / "training"
    for i in range(10):
        save(picture(i), src / f"img_{i:02d}.png")
    (src / "img_00.txt").write_text("a red balloon\n", encoding="utf-8")
    (src / "img_01.json").write_text(json.dumps({"caption": "a blue door", "licence": "CC-BY 4.0",
                                                 "url": "https://example.org/door.jpg"}), encoding="utf-8")
    (src / "img_02.json").write_text(json.dumps({"text": "a green field"}), encoding="utf-8")
    shutil.copy(src / "img_03.png", save(picture(3), src / "a" / "copy_1.png"))
    shutil.copy(src / "img_03.png", src / "a" / "copy_2.png")
    return src


# --- what gets stored ---------------------------------------------------------------------------------------------


def test_exact_duplicates_are_stored_once_with_their_count_and_every_source(folder, tmp_path):
    with build(folder, tmp_path / "idx") as index:
        assert len(index) == 10
        [[first]] = index.query([folder / "img_03.png"], k=1)
        assert first.duplicate_count == 3
        assert first.l2 == 0.0
        item = index.item(first.item_id)
        assert item["duplicate_count"] == 3
        assert sorted(Path(s["source"]).name for s in item["sources"]) == ["copy_1.png", "copy_2.png", "img_03.png"]
        assert first.source == item["sources"][0]["source"]  # the first source met, in sorted walk order
        info = index.info()
        assert (info["unique_images"], info["sources"], info["duplicate_sources"]) == (10, 12, 2)


def test_captions_licences_and_origins_come_from_txt_and_json_sidecars(folder, tmp_path):
    with build(folder, tmp_path / "idx") as index:
        result = index.query([folder / f"img_0{i}.png" for i in range(3)], k=1)
        balloon, door, field = (r[0] for r in result)
        assert balloon.caption == "a red balloon"
        assert (door.caption, door.licence) == ("a blue door", "CC-BY 4.0")
        assert index.item(door.item_id)["origin"] == "https://example.org/door.jpg"
        assert field.caption == "a green field"


def test_query_results_are_neighbours_with_the_shared_metrics(folder, tmp_path):
    with build(folder, tmp_path / "idx") as index:
        query = np.asarray(picture(5)) // 2 + 40  # a darker, washed-out version of img_05
        [neighbours] = index.query(query, k=4)
        assert [n.rank for n in neighbours] == [1, 2, 3, 4]
        assert all(isinstance(n, Neighbour) for n in neighbours)
        assert Path(neighbours[0].source).name == "img_05.png"
        q = canonical(query, SIZE)
        crowd = [index.canonical_image(i) for i in range(1, len(index) + 1)]  # fewer than 50: all of them
        for n in neighbours:
            y = index.canonical_image(n.item_id)
            # float32 canonical images carry k/255 to about 1e-8; the index computes on the exact uint8 values
            assert n.l2 == pytest.approx(metrics.l2(q, y), abs=1e-6)
            assert n.tiled_l2 == pytest.approx(metrics.tiled_l2(q, y), abs=1e-6)
            assert n.ssim == pytest.approx(metrics.ssim(q, y), abs=1e-6)
            assert n.calibrated_l2 == pytest.approx(metrics.calibrated_l2(q, y, crowd), rel=1e-6)
            assert n.index_id == index.index_id and len(n.image_sha256) == 64
            assert n.comparison_size == SIZE and np.array_equal(n.pixels, (y * 255).round().astype(np.uint8))
        # Ordered by the suggested verdict's own metric: nearest 1 is the image a "memorized" suggestion is about.
        assert [n.tiled_l2 for n in neighbours] == sorted(n.tiled_l2 for n in neighbours)


def test_query_takes_arrays_pil_images_and_paths_and_returns_one_list_per_image(folder, tmp_path):
    with build(folder, tmp_path / "idx") as index:
        path = folder / "img_04.png"
        pil = Image.open(path)
        as_float = np.asarray(pil, dtype=np.float32) / 255.0
        results = index.query([path, pil, np.asarray(pil), as_float, str(path)], k=2)
        assert len(results) == 5
        assert {r[0].item_id for r in results} == {results[0][0].item_id}
        assert all(r[0].l2 < 1e-6 for r in results)
        assert len(index.query(np.stack([np.asarray(pil)] * 3))) == 3  # an N x H x W x 3 batch
        assert len(index.query(path, k=50)[0]) == 10  # never more than the index holds
        with pytest.raises(TrainingIndexError, match="k must be at least 1"):
            index.query(path, k=0)


def test_thumbnails_canonical_pixels_and_items_serve_the_gui(folder, tmp_path):
    with build(folder, tmp_path / "idx") as index:
        [[n]] = index.query(folder / "img_07.png", k=1)
        thumb = Path(n.thumbnail)
        assert thumb.is_absolute() and thumb == index.thumbnail_path(n.item_id)
        with Image.open(thumb) as im:
            assert max(im.size) <= 128
        pixels = index.canonical_image(n.item_id)
        assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.float32
        assert np.array_equal(pixels, canonical(folder / "img_07.png", SIZE))
        assert index.item(n.item_id)["width"] == 64
        with pytest.raises(TrainingIndexError, match="no image 999"):
            index.item(999)


def test_compact_feature_distance_never_exceeds_the_exact_l2():
    rng = np.random.default_rng(0)
    for size in (32, 40):  # a multiple of the grid, and not
        a, b = rng.random((2, 50, size, size, 3))
        fa, fb = compact_features(a), compact_features(b)
        lower = np.sqrt(((fa - fb) ** 2).sum(axis=1) / feature_dim())
        exact = np.array([metrics.l2(x, y) for x, y in zip(a, b, strict=True)])
        assert np.all(lower <= exact + 1e-6)


def test_concurrent_queries_from_threads_agree(folder, tmp_path):
    with build(folder, tmp_path / "idx") as index:
        paths = [folder / f"img_{i:02d}.png" for i in range(10)]
        expected = [r[0].item_id for r in index.query(paths, k=1)]
        seen: list[list[int]] = []

        def worker():
            seen.append([r[0].item_id for r in index.query(paths, k=1)])

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [expected] * 4


# --- difficult files ------------------------------------------------------------------------------------------------


def test_each_unusable_file_is_skipped_and_named_with_its_reason(tmp_path, capsys):
    src = tmp_path / "src"
    save(picture(1), src / "good.png")
    full = jpeg_bytes(picture(2))
    (src / "truncated.jpg").write_bytes(full[: len(full) // 2])
    png = io.BytesIO()
    picture(3).save(png, format="PNG")
    (src / "truncated.png").write_bytes(png.getvalue()[:300])
    (src / "zero.png").write_bytes(b"")
    (src / "notes.jpg").write_text("this is text, not a picture", encoding="utf-8")
    (src / "bomb.png").write_bytes(bomb_png())
    (src / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>", encoding="utf-8")
    (src / "photos.zip").write_bytes(b"PK\x03\x04")
    (src / "README.md").write_text("ignored quietly", encoding="utf-8")
    out = tmp_path / "idx"
    assert main(["index", "build", str(src), "--out", str(out), "--size", "32", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads((out / "build_report.json").read_text(encoding="utf-8"))
    kinds = {Path(s["source"]).name: s["kind"] for s in report["skipped"]}
    assert kinds == {"truncated.jpg": "damaged", "truncated.png": "damaged", "zero.png": "empty",
                     "notes.jpg": "not-an-image", "bomb.png": "too-large", "drawing.svg": "unsupported",
                     "photos.zip": "unsupported"}
    for name in kinds:
        assert name in captured.out and name in captured.err  # in the summary, and as it happened
    assert "decompression bomb" in captured.out
    assert report["unique_images"] == 1


def test_cmyk_16_bit_palette_alpha_and_exif_rotated_images_are_indexed_as_they_look(tmp_path):
    src = tmp_path / "src"
    upright = [picture(i, (64, 48)) for i in range(6)]
    save(upright[0].convert("CMYK"), src / "cmyk.jpg", quality=95)
    sixteen = (np.asarray(upright[1].convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    assert Image.fromarray(sixteen).mode == "I;16"
    save(Image.fromarray(sixteen), src / "sixteen.png")
    save(upright[2].convert("P", palette=Image.Palette.ADAPTIVE, colors=64), src / "palette.png", transparency=0)
    rgba = upright[3].convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))))
    save(rgba, src / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    save(upright[4].transpose(Image.Transpose.ROTATE_90), src / "rotated.jpg", quality=95, exif=exif)
    save(upright[5].convert("L"), src / "grey.png")
    with build(src, tmp_path / "idx") as index:
        assert len(index) == 6 and index.info()["skipped"] == 0
        white = Image.new("RGBA", rgba.size, "white")
        expected = {
            "cmyk.jpg": upright[0].convert("CMYK").convert("RGB"),
            "sixteen.png": upright[1].convert("L").convert("RGB"),
            "alpha.png": Image.alpha_composite(white, rgba).convert("RGB"),
            "rotated.jpg": upright[4],
            "grey.png": upright[5].convert("L").convert("RGB"),
        }
        for name, look in expected.items():
            [[n]] = index.query(np.asarray(look), k=1)
            assert Path(n.source).name == name
            assert n.l2 < 0.03, name  # JPEG files differ from their pixels by compression only
        rotated = index.item(index.query(upright[4], k=1)[0][0].item_id)
        assert (rotated["width"], rotated["height"]) == (64, 48)  # the size as displayed


def test_large_jpegs_are_decoded_in_draft_mode_close_to_a_full_decode(tmp_path):
    src = tmp_path / "src"
    big = picture(9, (64, 64)).resize((1600, 1200), Image.Resampling.BICUBIC)
    save(big, src / "big.jpg", quality=92)
    with build(src, tmp_path / "idx") as index:
        full = np.asarray(Image.open(src / "big.jpg").convert("RGB"))  # a plain, full-size decode
        [[n]] = index.query(full, k=1)
        assert 0 < n.l2 < 0.01
        [[same]] = index.query(src / "big.jpg", k=1)  # files are decoded exactly as the build did
        assert same.l2 == 0.0
        assert index.item(n.item_id)["width"] == 1600


ODD_NAMES = ["café ☕.png", "漢字 テスト.png", "space name.png", "-dash.png", "#hash%20&.png", "quote'\"s.png",
             "new\nline.png", "emoji 🙂🎨.png"]


def test_unicode_and_odd_file_names_are_indexed_and_read_back(tmp_path, capsys):
    src = tmp_path / "src"
    for i, name in enumerate(ODD_NAMES):
        save(picture(20 + i), src / name)
    undecodable = os.fsencode(src) + b"/latin1 caf\xe9.png"
    with open(undecodable, "wb") as f:
        picture(40).save(f, format="PNG")
    out = tmp_path / "idx"
    assert main(["index", "build", str(src), "--out", str(out), "--size", "32", "--workers", "1",
                 "--no-store-pixels", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unique_images"] == len(ODD_NAMES) + 1 and report["skipped"] == []
    with TrainingIndex.open(out) as index:
        for i, name in enumerate(ODD_NAMES):
            [[n]] = index.query(picture(20 + i), k=1)
            assert Path(n.source).name == name and n.l2 == 0.0  # pixels decoded again from the odd name
        [[n]] = index.query(picture(40), k=1)
        assert n.source.endswith("latin1 caf\\xe9.png") and n.l2 == 0.0
    assert main(["index", "query", str(out), str(src / ODD_NAMES[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["neighbours"][0]["source"].endswith("café ☕.png")


def test_symlink_loops_and_folders_named_like_images_neither_hang_nor_crash(tmp_path):
    src = tmp_path / "src"
    save(picture(1), src / "one.png")
    save(picture(2), src / "folder.jpg" / "two.png")  # a folder named like an image
    (src / "loop").symlink_to(src, target_is_directory=True)  # a loop back to the top
    (src / "deep").mkdir()
    (src / "deep" / "up").symlink_to(src / "deep", target_is_directory=True)
    (src / "self.jpg").symlink_to(src / "self.jpg")  # a link to itself
    (src / "gone.png").symlink_to(src / "nowhere.png")
    (src / "alias.png").symlink_to(src / "one.png")  # a link to a good image: one more source of it
    out = tmp_path / "idx"
    run = subprocess.run([sys.executable, "-m", "inspector", "index", "build", str(src), "--out", str(out),
                          "--size", "32", "--workers", "1", "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["unique_images"] == 2 and report["sources"] == 3
    kinds = {Path(s["source"]).name: s["kind"] for s in report["skipped"]}
    assert kinds == {"self.jpg": "link-loop", "gone.png": "broken-link"}


def test_the_index_folder_is_never_indexed_when_it_lies_inside_src(folder):
    out = folder / "index"
    build_index(folder, out, comparison_size=SIZE, workers=1)
    build_index(folder, out, resume=True, workers=1)  # a second walk meets the thumbnails: still not indexed
    with TrainingIndex.open(out) as index:
        assert len(index) == 10 and index.info()["sources"] == 12


def test_two_decoding_processes_build_the_same_index_as_one(folder, tmp_path):
    one = build(folder, tmp_path / "one")
    two = build(folder, tmp_path / "two", workers=2, chunk_size=3)
    with one, two:
        assert (tmp_path / "one" / "features.f16").read_bytes() == (tmp_path / "two" / "features.f16").read_bytes()
        assert [one.item(i)["sha256"] for i in range(1, 11)] == [two.item(i)["sha256"] for i in range(1, 11)]
        assert one.info()["sources"] == two.info()["sources"] == 12


def test_progress_reports_counts_rate_and_eta(folder, tmp_path):
    events: list[BuildProgress] = []
    build_index(folder, tmp_path / "idx", comparison_size=SIZE, workers=1, chunk_size=4, progress=events.append)
    assert [e.phase for e in events][-2:] == ["finishing", "done"]
    ingesting = [e for e in events if e.phase == "ingesting"]
    assert len(ingesting) >= 3
    assert [e.files_done for e in ingesting] == sorted(e.files_done for e in ingesting)
    assert events[-1].files_done == 12 and events[-1].unique_images == 10 and events[-1].fraction == 1.0
    assert all(e.rate >= 0 and (e.eta_s is None or e.eta_s >= 0) for e in events)
    # The one progress event: every command and the window draw it without knowing it is a build.
    assert all(isinstance(e, Progress) and e.done == e.files_done for e in events)
    assert [e.stage for e in events][-2:] == ["building the search index", "index built"]


def test_the_manifest_documents_the_feature_versions_and_counts(folder, tmp_path):
    build(folder, tmp_path / "idx").close()
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete" and manifest["comparison_size"] == SIZE
    assert manifest["feature"]["dim"] == 768 and "lower bound" in manifest["feature"]["definition"]
    assert manifest["counts"] == {"unique_images": 10, "sources": 12, "skipped": 0}
    assert {"inspector", "numpy", "pillow", "faiss", "sqlite"} <= set(manifest["versions"])
    assert len(manifest["index_id"]) == 36


def test_an_index_without_stored_pixels_decodes_candidates_from_their_files(folder, tmp_path):
    stored = build(folder, tmp_path / "stored")
    reread = build(folder, tmp_path / "reread", store_pixels=False)
    with stored, reread:
        assert not (tmp_path / "reread" / "pixels.u8").exists()
        query = np.asarray(picture(6)) // 3 + 80
        a, b = stored.query(query)[0], reread.query(query)[0]
        assert [(n.item_id, n.l2, n.ssim) for n in a] == [(n.item_id, n.l2, n.ssim) for n in b]
    (folder / "img_06.png").unlink()
    with TrainingIndex.open(tmp_path / "reread") as index, pytest.raises(TrainingIndexError, match="no longer"):
        index.query(query)


# --- the command line -----------------------------------------------------------------------------------------------


def test_build_info_and_query_on_the_command_line(folder, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", "build", str(folder), "--out", str(out), "--size", "32", "--workers", "1"]) == 0
    text = capsys.readouterr()
    assert "indexed 10 unique images from 12 files (2 exact duplicates)" in text.out
    assert "index built: 12 files, 10 unique" in text.err and "files/s" in text.err  # the progress lines

    assert main(["index", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["unique_images"], info["sources"], info["skipped"], info["comparison_size"]) == (10, 12, 0, 32)
    assert info["bytes"]["total"] > info["bytes"]["features"] > 0
    assert main(["index", "info", str(out)]) == 0
    assert "10 unique, from 12 files" in capsys.readouterr().out

    images = [str(folder / "img_03.png"), str(folder / "img_01.png")]
    assert main(["index", "query", str(out), *images, "--k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in result] == images
    assert [len(r["neighbours"]) for r in result] == [2, 2]
    top = result[0]["neighbours"][0]
    assert top["duplicate_count"] == 3 and top["l2"] == 0.0 and Path(top["thumbnail"]).is_file()
    assert result[1]["neighbours"][0]["caption"] == "a blue door"
    assert main(["index", "query", str(out), images[0]]) == 0
    assert "near copy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["index", "build", "{missing}", "--out", "{out}"], "no such folder"),
    (["index", "build", "{src}", "--out", "{full}"], "not empty: add --resume"),
    (["index", "build", "{src}", "--out", "{out}", "--size", "4"], "--size must be between"),
    (["index", "info", "{src}"], "not a training index"),
    (["index", "query", "{out}", "{src}/img_00.png"], "no such index folder"),
    (["index", "query", "{built}", "{missing}"], "no such image file"),
    (["index", "query", "{built}", "{src}/img_00.txt"], "not an image"),
    (["index", "query", "{built}", "{src}/img_00.png", "--k", "0"], "--k: the number of neighbours must be between 1 and"),
    (["index", "build", "{empty}", "--out", "{out}", "--workers", "1"], "no usable images"),
])
def test_bad_input_exits_2_with_one_clear_line(folder, tmp_path, capsys, argv, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "something.txt").write_text("x", encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    built = tmp_path / "built"
    build(folder, built).close()
    names = {"missing": tmp_path / "missing", "out": tmp_path / "out", "src": folder, "full": full,
             "empty": empty, "built": built}
    assert main([a.format(**names) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" or "no usable images" in message
    err = [line for line in captured.err.splitlines() if line.startswith("inspector")]
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()  # nothing half-written, and no empty index left claiming to be one


def test_an_unfinished_build_is_refused_with_a_resume_hint(folder, tmp_path, capsys):
    builder = IndexBuilder(folder, tmp_path / "idx", comparison_size=SIZE, workers=1, chunk_size=2)
    run = builder.run()
    next(run)
    run.close()  # stopped between chunks, as the GUI's Cancel does
    assert main(["index", "query", str(tmp_path / "idx"), str(folder / "img_00.png")]) == 2
    assert "--resume" in capsys.readouterr().err


def test_the_decoders_uint8_canonical_form_is_the_shared_canonical_form_exactly():
    from inspector.training_index.decode import canonical_uint8

    rng = np.random.default_rng(3)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(20, 300, 2))
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for size in (16, 32, 64, 256):
            assert np.array_equal(canonical_uint8(im, size), (canonical(im, size) * 255).round().astype(np.uint8))


def test_compact_features_agree_for_uint8_and_float_images():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(compact_features(images), compact_features(images / 255.0), atol=1e-6)
    odd = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)  # 40 px over 16 blocks: 2.5 px each
    w = np.array([1.0, 1.0, 0.5]) / 2.5  # the first block's area weights
    first = np.einsum("i,nijc,j->nc", w, odd[:, :3, :3].astype(float), w) / 255
    features = compact_features(odd)
    assert features.shape == (2, 768) and features.dtype == np.float32
    assert np.allclose(features[:, :3], first, atol=1e-6)


def test_the_demo_index_is_built_on_first_use_at_the_demo_size_and_reused(folder, tmp_path, monkeypatch):
    import inspector.resources
    from inspector.training_index import DEMO_COMPARISON_SIZE, demo_index

    monkeypatch.setattr(inspector.resources, "demo_training_dir", lambda: folder)
    with demo_index(tmp_path / "cache") as first:
        assert len(first) == 10 and first.comparison_size == DEMO_COMPARISON_SIZE == 32
        index_id = first.index_id
    with demo_index(tmp_path / "cache") as again:
        assert again.index_id == index_id
    monkeypatch.setattr(inspector.resources, "demo_training_dir", lambda: tmp_path / "nowhere")
    with pytest.raises(TrainingIndexError, match="inspector demo build"):
        demo_index(tmp_path / "cache")
