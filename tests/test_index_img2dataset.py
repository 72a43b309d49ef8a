"""img2dataset output as LAION subsets come: webdataset .tar shards, and the files-plus-parquet layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main
from inspector.training_index import TrainingIndex, build_index

SIZE = 32


def sample_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((48, 40), Image.Resampling.BICUBIC)


def encoded(im: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def sample_meta(key: str, seed: int) -> dict:
    """What img2dataset writes in key.json (abridged)."""
    return {"url": f"https://images.example.org/{seed}.jpg", "key": key, "status": "success",
            "caption": f"photo number {seed}", "width": 48, "height": 40, "LICENSE": "CC BY-SA 4.0",
            "NSFW": "UNLIKELY", "similarity": 0.31}


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: list[tuple[str, bytes | None, str, dict | None]]) -> None:
    """samples: (key, image bytes or None, image extension, json metadata or None)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, image, ext, meta in samples:
            if image is not None:
                add(tar, f"{key}.{ext}", image)
            if meta is not None:
                add(tar, f"{key}.txt", meta["caption"].encode())
                add(tar, f"{key}.json", json.dumps(meta).encode())


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    out = tmp_path / "laion"
    out.mkdir()
    first = [(f"0000000{i:02d}", encoded(sample_image(i)), "jpg", sample_meta(f"0000000{i:02d}", i)) for i in range(10)]
    first.append(("000000010", encoded(sample_image(10), "PNG"), "png", sample_meta("000000010", 10)))
    good = encoded(sample_image(11))
    first.append(("000000011", good[: len(good) // 3], "jpg", sample_meta("000000011", 11)))  # truncated download
    write_shard(out / "00000.tar", first)
    second = [(f"0001000{i:02d}", encoded(sample_image(20 + i)), "jpg", sample_meta(f"0001000{i:02d}", 20 + i))
              for i in range(5)]
    second.append(("000100005", encoded(sample_image(3)), "jpg", sample_meta("000100005", 3)))  # same bytes as #3
    write_shard(out / "00001.tar", second)
    third = [(f"0002000{i:02d}", encoded(sample_image(40 + i)), "jpg", sample_meta(f"0002000{i:02d}", 40 + i))
             for i in range(6)]
    write_shard(out / "00002.tar", third)
    data = (out / "00002.tar").read_bytes()
    (out / "00002.tar").write_bytes(data[: len(data) // 2])  # a shard cut short by a failed copy
    (out / "00000_stats.json").write_text(json.dumps({"count": 12, "successes": 11}), encoding="utf-8")
    (out / "00000.parquet").write_bytes(b"PAR1" + bytes(64) + b"PAR1")
    return out


def test_webdataset_shards_are_indexed_in_place_with_captions_urls_and_licences(shards, tmp_path):
    report = build_index(shards, tmp_path / "idx", comparison_size=SIZE, workers=1)
    skipped = {s.source.rsplit("/", 1)[-1]: s for s in report.skipped}
    assert set(skipped) == {"00000.tar#000000011.jpg", "00002.tar"}
    assert skipped["00000.tar#000000011.jpg"].kind == "damaged"
    assert skipped["00002.tar"].kind == "damaged" and "samples were read" in skipped["00002.tar"].reason
    with TrainingIndex.open(tmp_path / "idx") as index:
        info = index.info()
        third = info["sources"] - 11 - 6
        assert 0 < third < 6  # the samples before the cut are kept
        assert info["unique_images"] == 10 + 1 + 5 + third
        [[n]] = index.query(np.asarray(Image.open(io.BytesIO(encoded(sample_image(3))))), k=1)
        assert n.l2 == 0.0 and n.duplicate_count == 2
        assert n.source.endswith("00000.tar#000000003.jpg")
        assert (n.caption, n.licence) == ("photo number 3", "CC BY-SA 4.0")
        item = index.item(n.item_id)
        assert item["origin"] == "https://images.example.org/3.jpg"
        assert [s["source"].rsplit("/", 1)[-1] for s in item["sources"]] == ["00000.tar#000000003.jpg",
                                                                             "00001.tar#000100005.jpg"]
        [[png]] = index.query(sample_image(10), k=1)
        assert png.source.endswith("#000000010.png") and png.l2 == 0.0


def test_the_files_layout_with_parquet_is_indexed(tmp_path, capsys):
    out = tmp_path / "laion"
    for i in range(8):
        folder = out / f"{i // 4:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        key = f"{i // 4:05d}{i % 4:04d}"
        (folder / f"{key}.jpg").write_bytes(encoded(sample_image(100 + i)))
        (folder / f"{key}.txt").write_text(f"caption {i}", encoding="utf-8")
        (folder / f"{key}.json").write_text(json.dumps(sample_meta(key, 100 + i)), encoding="utf-8")
    (out / "00000.parquet").write_bytes(b"PAR1" + bytes(32) + b"PAR1")
    (out / "00000_stats.json").write_text("{}", encoding="utf-8")
    index_dir = tmp_path / "idx"
    assert main(["index", "build", str(out), "--out", str(index_dir), "--size", "32", "--workers", "1"]) == 0
    assert "indexed 8 unique images from 8 files" in capsys.readouterr().out
    assert main(["index", "query", str(index_dir), str(out / "00001" / "000010002.jpg"), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    top = result["neighbours"][0]
    assert top["source"].endswith("00001/000010002.jpg") and top["l2"] == 0.0
    assert top["caption"] == "photo number 106"  # the JSON sidecar's caption wins over the .txt


def test_shard_members_are_read_again_by_offset_when_pixels_are_not_stored(shards, tmp_path):
    build_index(shards, tmp_path / "idx", comparison_size=SIZE, workers=2, store_pixels=False)
    with TrainingIndex.open(tmp_path / "idx") as index:
        for seed in (0, 7, 22):
            [[n]] = index.query(np.asarray(Image.open(io.BytesIO(encoded(sample_image(seed))))), k=1)
            assert n.l2 == 0.0 and n.caption == f"photo number {seed}"


def test_a_single_shard_can_be_indexed(shards, tmp_path):
    report = build_index(shards / "00001.tar", tmp_path / "idx", comparison_size=SIZE, workers=1)
    assert (report.unique_images, report.sources, report.skipped) == (6, 6, [])
