"""Indexes and casebooks live in whatever folder the person picks: characters that mean something in a URI are
only part of a name."""

from __future__ import annotations

import stat

import numpy as np
import pytest
from PIL import Image

from inspector.training_index import TrainingIndex, build_index


def pictures(folder, n=6):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"img_{i}.png")
    return folder


def every_file(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["idx#1", "a?b", "100%"])
def test_an_index_in_a_folder_named_like_a_uri_is_built_queried_and_left_without_stray_files(tmp_path, name):
    src = pictures(tmp_path / "training")
    out = tmp_path / name
    build_index(src, out, comparison_size=32, workers=1)
    before = every_file(tmp_path)

    index = TrainingIndex.open(out)  # opened read-only, through a file: URI
    query = np.asarray(Image.open(src / "img_3.png"))
    nearest = index.query([query], k=2)[0]
    index.close()

    assert nearest[0].tiled_l2 == 0.0 and nearest[0].source.endswith("img_3.png")
    # The unquoted URI opened "file:.../idx" read-write: it made an empty file "idx" beside the index and failed.
    assert every_file(tmp_path) == before


@pytest.mark.parametrize("name", ["cb#1", "a?b", "100%"])
def test_a_read_only_casebook_in_a_folder_named_like_a_uri_opens_to_read(tmp_path, name):
    from inspector.casebook import Casebook

    folder = tmp_path / name
    folder.mkdir()
    path = folder / "casebook.db"
    with Casebook.open(path):
        pass
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)  # opened read-only, through a file: URI
    try:
        before = every_file(tmp_path)
        with Casebook.open(path, readonly=True) as book:
            assert book.verify().ok
        assert every_file(tmp_path) == before
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
