"""What the real img2dataset writes is indexed: its files layout, webdataset shards and parquet output, each with
the captions and the URLs the images were downloaded from, as ``index query --json`` shows them.

The test setup runs the img2dataset package itself on ``file://`` URLs of images it writes (a download that
cannot work is among them). img2dataset normally starts a pool of processes and a logger process, each of which
imports it again (seconds apiece); here its downloader, resizer and writers run in this process instead, which is
the same code writing the same files.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main

FORMATS = ("files", "webdataset", "parquet")
CAPTIONS = ["a red barn at dusk", "Morning Cup", "two cats on a windowsill", "a lighthouse in fog"]


class _NoLogger:
    """Stands in for img2dataset's logger process (it only prints speed statistics)."""

    def __init__(self, *args, **kwargs):
        self.done_shards = set()

    def start(self) -> None:
        pass

    def join(self) -> None:
        pass

    def terminate(self) -> None:
        pass


def _in_this_process(processes_count, downloader, reader, _subjob_size, max_shard_retry):
    """img2dataset's multiprocessing distributor without the pool: each shard of URLs is downloaded here."""
    for shard in reader:
        status, _row = downloader(shard)
        assert status, f"img2dataset failed on a shard: {_row}"


def run_img2dataset(url_list: Path, out: Path, output_format: str) -> None:
    handler = signal.getsignal(signal.SIGINT)  # download() installs its own Ctrl+C handler
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check for a newer albumentations on import
        mp.setenv("WANDB_MODE", "disabled")
        import img2dataset  # noqa: F401 - the package's "main" attribute is the function; the module is below

        i2d = sys.modules["img2dataset.main"]
        mp.setattr(i2d, "LoggerProcess", _NoLogger)
        mp.setattr(i2d, "multiprocessing_distributor", _in_this_process)
        try:
            i2d.download(url_list=str(url_list), input_format="csv", url_col="url", caption_col="caption",
                         output_format=output_format, output_folder=str(out), processes_count=1, thread_count=2,
                         resize_mode="no", timeout=5, retries=0, enable_wandb=False)
        finally:
            signal.signal(signal.SIGINT, handler)


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((64, 48),
                                                                                   Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("img2dataset")
    originals = root / "originals"
    originals.mkdir()
    rows = []
    for i, caption in enumerate(CAPTIONS):
        path = originals / f"photo {i}.png"
        picture(i).save(path)
        rows.append((path.as_uri(), caption))
    rows.append(((originals / "missing.png").as_uri(), "a download that fails"))
    url_list = root / "urls.csv"
    with open(url_list, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "caption"])
        writer.writerows(rows)
    outputs = {}
    for fmt in FORMATS:
        outputs[fmt] = root / fmt
        run_img2dataset(url_list, outputs[fmt], fmt)
    return {"outputs": outputs, "originals": [originals / f"photo {i}.png" for i in range(len(CAPTIONS))]}


def test_img2dataset_wrote_the_three_layouts(downloads):
    outputs = downloads["outputs"]
    assert sorted(p.name for p in (outputs["files"] / "00000").glob("*.jpg")) == [f"00000000{i}.jpg" for i in range(4)]
    assert (outputs["webdataset"] / "00000.tar").is_file()
    import pyarrow.parquet as pq

    table = pq.read_table(outputs["parquet"] / "00000.parquet")
    assert "jpg" in table.column_names and table.num_rows == 5  # the failed download is a row without bytes


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_img2dataset_layout_indexes_with_captions_and_urls(downloads, fmt, tmp_path, capsys):
    index_dir = tmp_path / "index"
    assert main(["index", "build", str(downloads["outputs"][fmt]), "--out", str(index_dir), "--size", "32",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "indexed 4 unique images from 4 files" in out and "skipped" not in out
    originals = downloads["originals"]
    assert main(["index", "query", str(index_dir), *map(str, originals), "--k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    for original, caption, result in zip(originals, CAPTIONS, results, strict=True):
        top = result["neighbours"][0]
        assert top["caption"] == caption
        assert top["url"] == original.as_uri()  # where it was downloaded from, beside the local file
        assert top["tiled_l2"] < 0.05  # img2dataset re-encoded it as JPEG: a near copy, not bytes-identical
        assert top["index_role"] == "training"
        local = {"files": "/00000/", "webdataset": "00000.tar#", "parquet": "00000.parquet#"}[fmt]
        assert local in top["source"]
        assert result["index"]["role"] == "training" and result["index"]["images"] == 4
        assert result["index"]["source"] == str(downloads["outputs"][fmt])
        assert len(result["index"]["content_hash"]) == 64


def test_the_same_downloads_give_the_same_content_hash_in_every_layout(downloads, tmp_path, capsys):
    hashes = set()
    for fmt in ("webdataset", "parquet"):
        assert main(["index", "build", str(downloads["outputs"][fmt]), "--out", str(tmp_path / fmt),
                     "--size", "32", "--workers", "1"]) == 0
        assert main(["index", "info", str(tmp_path / fmt), "--json"]) == 0
        capsys.readouterr()
        hashes.add(json.loads((tmp_path / fmt / "manifest.json").read_text(encoding="utf-8"))["content_hash"])
    assert len(hashes) == 1  # the same JPEG bytes, whichever container holds them


def test_the_text_output_names_the_url_beside_the_shard(downloads, tmp_path, capsys):
    index_dir = tmp_path / "index"
    assert main(["index", "build", str(downloads["outputs"]["webdataset"]), "--out", str(index_dir), "--size",
                 "32", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["index", "query", str(index_dir), str(downloads["originals"][2]), "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert f"url {downloads['originals'][2].as_uri()}" in out
    assert "00000.tar#000000002.jpg" in out
