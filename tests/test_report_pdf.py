"""The PDF report a legal reviewer files: a cover, one summary page per prompt, each finding on its own pages with
its images beside its numbers, "page x of y" everywhere, and every hash in full (issue 17's acceptance)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

pypdf = pytest.importorskip("pypdf")

from inspector import metrics  # noqa: E402
from inspector.casebook import Casebook  # noqa: E402
from inspector.cli import main  # noqa: E402
from inspector.findings import Finding, Neighbour  # noqa: E402

MODEL_SHA = "3f5a" * 16


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def real_finding(seed: int, prompt: str, copy: bool) -> Finding:
    """A 32 px generation with four neighbours whose distances are computed from their stored pixels; with
    ``copy`` the nearest is the generation plus faint noise (a near copy), else four unrelated images."""
    rng = np.random.default_rng(seed)
    generation = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    neighbours = []
    for rank in range(1, 5):
        if copy and rank == 1:
            pixels = np.clip(generation.astype(int) + rng.integers(-6, 7, generation.shape), 0, 255).astype(np.uint8)
        else:
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        neighbours.append(Neighbour(
            rank=rank, item_id=500 + 10 * seed + rank, source=f"train/{seed}-{rank}.png", caption=f"caption {rank}",
            duplicate_count=rank, l2=metrics.l2(generation, pixels), tiled_l2=metrics.tiled_l2(generation, pixels),
            ssim=metrics.ssim(generation, pixels), index_id="demo-index", thumbnail_png=png(pixels),
            image_sha256=f"{rank:02d}" * 32, comparison_size=32, pixels=pixels, url=f"https://example.org/{rank}.png",
            licence="CC BY 4.0"))
    neighbours.sort(key=lambda n: n.tiled_l2)
    for rank, n in enumerate(neighbours, 1):
        n.rank = rank
    provenance = {"schema": "test", "prompt": prompt, "seed": seed, "steps": 20, "guidance": 7.5,
                  "scheduler": {"class": "DDIMScheduler", "config": {"num_train_timesteps": 1000}},
                  "model": {"source": "demo", "sha256": MODEL_SHA}, "versions": {"diffusers": "0.30"}}
    return Finding(prompt=prompt, seed=seed, image_png=png(generation), provenance=provenance,
                   neighbours=neighbours, suggested_verdict="memorized" if copy else "novel",
                   suggestion_reason="near copy" if copy else "no near copy", metrics={"wen_score": 1.5})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A casebook with two prompts, one memorized (two findings) and one novel, exported as PDF by the CLI."""
    folder = tmp_path_factory.mktemp("pdf")
    book_path = folder / "case.db"
    with Casebook.open(book_path) as book:
        a = book.record(real_finding(1, "a photo of Ann Graham Lotz", copy=True))
        book.label(a, "novel", reviewer="ana")
        book.label(a, "memorized", reviewer="ana", note="a near copy of the portrait")
        b = book.record(real_finding(2, "a photo of Ann Graham Lotz", copy=True))
        book.label(b, "memorized", reviewer="bob")
        c = book.record(real_finding(3, "colourful squares", copy=False))
        book.label(c, "novel", reviewer="ana")
        events = {i: [e.hash for e in book.label_history(i)] for i in (a, b, c)}
        distances = {i: book.get(i).neighbours[0].tiled_l2 for i in (a, b, c)}
    out = folder / "report.pdf"
    assert main(["casebook", "export", str(book_path), "--format", "pdf", "--out", str(out), "--matter",
                 "Lotz v. Model Co.", "--claimant", "Ann Graham Lotz", "--author", "R. Reviewer"]) == 0
    pages = [page.extract_text() for page in pypdf.PdfReader(out).pages]
    return {"path": out, "pages": pages, "reader": pypdf.PdfReader(out), "events": events, "ids": (a, b, c),
            "distances": distances}


def test_the_pdf_has_a_cover_page_naming_the_matter_the_casebook_and_its_chain_head(exported):
    cover = exported["pages"][0]
    assert "Cover" in cover and "Casebook report: case.db" in cover
    for words in ("Lotz v. Model Co.", "Ann Graham Lotz", "R. Reviewer", "Integrity: verified", "Label-chain head",
                  "Casebook file sha256", "reportlab", "What was searched"):
        assert words in cover, words
    assert re.search(r"Exported\s+\S+ \d{2}:\d{2}:\d{2} \S+ \(UTC[+-]\d{2}:\d{2}\)", cover)
    assert re.search(r"Casebook file sha256\s*[0-9a-f]{64}", cover)


def test_every_page_says_page_x_of_y_and_its_section(exported):
    pages = exported["pages"]
    for number, text in enumerate(pages, 1):
        assert f"page {number} of {len(pages)}" in text, number
    for text in pages:
        assert re.search(r"Cover|Prompt summary \d of \d|Finding \d+|How to read this report", text)


def test_one_summary_page_per_prompt_with_what_was_generated_and_the_copied_image(exported):
    summaries = [i for i, text in enumerate(exported["pages"]) if "Prompt summary" in text]
    assert len(summaries) == 2 and summaries == [1, 2]  # right after the cover, one page each
    memorized, novel = (exported["pages"][i] for i in summaries)
    assert "a photo of Ann Graham Lotz" in memorized and "Generated" in memorized
    assert "The copied image" in memorized and "https://example.org/1.png" in memorized
    assert "CC BY 4.0" in memorized and "2 memorized" in memorized
    assert "colourful squares" in novel and "The nearest image (not a near copy)" in novel
    reader = exported["reader"]
    assert all(len(reader.pages[i].images) >= 1 for i in summaries)  # the copied image itself


def test_each_finding_starts_a_page_with_its_images_beside_their_numbers(exported):
    pages, reader = exported["pages"], exported["reader"]
    for finding_id in exported["ids"]:
        [first] = [i for i, text in enumerate(pages) if re.search(rf"Finding {finding_id}: ", text)]
        text = pages[first]
        tiled = exported["distances"][finding_id]
        assert f"tiled l2 {tiled:.2f}" in text  # the verdict's distance, in words
        assert "Generation, seed" in text and "Nearest 1" in text
        assert len(reader.pages[first].images) >= 3  # the generation, the copied image, the tile grid
        owned = [i for i, t in enumerate(pages) if re.search(rf"\bFinding {finding_id}\b", t)]
        assert owned == list(range(first, first + len(owned)))  # its pages are its own, in one run
        assert len(owned) <= 3


def test_the_pdf_holds_the_full_model_hash_and_every_label_event_hash(exported):
    text = "\n".join(exported["pages"])
    assert MODEL_SHA in text
    for hashes in exported["events"].values():
        for digest in hashes:
            assert digest in text


def test_characters_the_font_lacks_are_written_as_code_points_not_dropped(tmp_path):
    from inspector.report.pdf import fonts, safe_text

    glyphs = fonts()[3]
    missing = next(chr(c) for c in range(0x1F600, 0x1F700) if c not in glyphs)
    assert safe_text(f"a <b>{missing}</b>") == f"a &lt;b&gt;[U+{ord(missing):04X}]&lt;/b&gt;"
