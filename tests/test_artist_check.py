"""The artist's "check my work" without Qt (issue 18, point 3): prompts from titles and the name, and on the
demo a folder holding the coffee photo among 20 other images reports the coffee work reproduced."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inspector.artist_check import build_prompts, build_reference, check_work, seed_ranges, title_from


def test_titles_come_from_file_names_unless_a_caption_was_written():
    assert title_from("works/morning_cup.png") == "morning cup"
    assert title_from("works/a.png", "Morning Cup", "txt") == "Morning Cup"
    assert title_from("works/Morning-Cup.png", "Morning Cup", "file name") == "Morning Cup"


def test_the_prompts_people_would_try_then_the_artists_own_lines():
    assert build_prompts(["Morning Cup"], "Rachel Michetti", ["coffee art", "Morning Cup"]) == [
        "Morning Cup", "Morning Cup by Rachel Michetti", "in the style of Rachel Michetti", "coffee art"]
    assert build_prompts(["Morning Cup"], "") == ["Morning Cup"]


def test_seed_ranges_read_as_a_person_writes_them():
    assert seed_ranges([3, 0, 1, 2, 7]) == "0-3, 7"


@pytest.mark.slow
def test_the_coffee_work_is_reported_reproduced_and_nothing_else(tmp_path):
    from skimage import data

    works = tmp_path / "my works"
    works.mkdir()
    Image.fromarray(data.coffee()).save(works / "Morning Cup.png")
    others = [data.astronaut(), data.chelsea(), data.rocket(), data.camera(), data.moon(), data.page()]
    rng = np.random.default_rng(0)
    for i in range(20):
        if i < len(others):
            img = others[i]
            img = np.stack([img] * 3, -1) if img.ndim == 2 else img
        else:
            img = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(works / f"work {i:02d}.png")
    (works / "broken.png").write_bytes(b"not a png")
    index = tmp_path / "reference"
    skipped = []
    for event in build_reference(works, index):
        skipped += [s.source for s in getattr(event, "newly_skipped", [])]
    assert any("broken.png" in s for s in skipped)
    # The name-only pattern and the artist's own line: 2 prompts x 4 images (every title pattern would be 60+).
    result = check_work("demo", index, "Rachel Michetti", own_prompts=["a cup of coffee"], n=4, steps=None,
                        patterns=["in the style of {name}"])
    assert result.prompts == ["in the style of Rachel Michetti", "a cup of coffee"]
    reproduced = {w.file_name for w in result.reproduced}
    assert reproduced == {"Morning Cup.png"}, result.summary()
    words = next(w for w in result.works if w.file_name == "Morning Cup.png").in_words()
    assert "was reproduced by 'a cup of coffee', seeds" in words and "(near copy)" in words
    assert str(tmp_path) not in result.summary()
