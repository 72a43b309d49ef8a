"""Words the model does not know: what the tokenizer cannot read, words cut off by its limit, per-word Wen
attribution, and how a prompt matches the captions in the index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from inspector.demo.tokenizer import caption_words, save_tokenizer
from inspector.resources import demo_model_dir, demo_training_dir
from inspector.vocabulary import KNOWN_WORDS_FILE, check_prompt, load_tokenizers

HAVE_DEMO = (demo_model_dir() / "model_index.json").exists()
needs_demo = pytest.mark.skipif(not HAVE_DEMO, reason="the demo model is not in resources/demo/model")
CAPTIONS = ["a red fox in the snow", "a blue car", "a photo of a cat"]


def _plain_clip_tokenizer(folder: Path, max_length: int | None = None):
    """A tiny byte-level CLIP BPE with no list of known words, like a real CLIP tokenizer."""
    from transformers import CLIPTokenizer

    save_tokenizer(folder, CAPTIONS)
    (folder / KNOWN_WORDS_FILE).unlink()
    tok = CLIPTokenizer.from_pretrained(folder)
    if max_length is not None:
        tok.model_max_length = max_length
    return tok


# --- the tokenizer ------------------------------------------------------------------------------------------------


@needs_demo
@pytest.mark.parametrize("prompt, unknown", [
    ("rachel michetti", ["rachel", "michetti"]),
    ("Rachel Michetti", ["Rachel", "Michetti"]),
    ("morning cup", ["morning"]),
    ("a cup of coffee", []),
    ("Chelsea the Cat!", []),
])
def test_the_demo_tokenizer_names_the_words_the_model_cannot_read(prompt, unknown):
    check = check_prompt(load_tokenizers("demo"), prompt)
    assert check.unknown_words == unknown
    assert check.truncated_words == []
    if unknown:
        (note,) = check.notes()
        assert f"does not know: {', '.join(unknown)}" in note
        assert "a NOVEL verdict says nothing about them" in note
    else:
        assert check.notes() == []


@needs_demo
def test_the_demo_models_known_words_are_exactly_its_training_captions_words():
    captions = [json.loads(p.read_text(encoding="utf-8"))["caption"]
                for p in sorted(demo_training_dir().glob("*.json"))]
    listed = [w for w in (demo_model_dir() / "tokenizer" / KNOWN_WORDS_FILE).read_text(encoding="utf-8").splitlines()
              if w and not w.startswith("#")]
    assert listed == caption_words(captions)


def test_a_byte_level_tokenizer_without_a_word_list_knows_every_word(tmp_path):
    check = check_prompt([_plain_clip_tokenizer(tmp_path / "tok")], "rachel michetti drinks coffee")
    assert check.unknown_words == []
    assert check.notes() == []


def test_a_word_with_the_unknown_token_is_named_without_a_word_list(tmp_path):
    from transformers import CLIPTokenizer

    folder = tmp_path / "tok"
    _plain_clip_tokenizer(folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    for piece in ("z", "z</w>"):  # a tokenizer that cannot spell "z" maps it to its unknown token
        del vocab[piece]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tok = CLIPTokenizer.from_pretrained(folder)
    assert tok.unk_token_id in tok("a zebra").input_ids
    assert check_prompt([tok], "a zebra, a fox").unknown_words == ["zebra"]


def test_words_past_the_token_limit_are_named_as_cut_off(tmp_path):
    # 8 tokens: the two markers and 6 pieces; the comma and "a blue car" fall past the end (a cut-off comma
    # does not count as a word cut in the middle).
    tok = _plain_clip_tokenizer(tmp_path / "tok", max_length=8)
    check = check_prompt([tok], "a red fox in the snow, a blue car")
    assert check.token_limit == 8 and check.tokens_needed == 12
    assert check.truncated_words == ["a", "blue", "car"]
    assert check.cut_off_text == "a blue car"
    (note,) = check.notes()
    assert "reads only the first 8 tokens" in note and "“a blue car”" in note
    assert "cannot depend on those words" in note
    assert check_prompt([tok], "a red fox").notes() == []


def test_a_word_cut_in_the_middle_by_the_limit_is_said_to_be_cut(tmp_path):
    tok = _plain_clip_tokenizer(tmp_path / "tok", max_length=8)
    # "snowmobile" is spelled in several pieces; its first fits in the 6 content tokens, the rest do not.
    check = check_prompt([tok], "a red fox in the snowmobile")
    word = next(w for w in check.words if w.name == "snowmobile")
    assert 0 < word.visible_pieces < len(word.pieces)
    assert check.truncated_words == ["snowmobile"]
    assert "“snowmobile” is cut in the middle" in check.notes()[0]


def test_two_tokenizers_count_a_word_cut_off_by_either(tmp_path):
    long_one = _plain_clip_tokenizer(tmp_path / "a")
    short_one = _plain_clip_tokenizer(tmp_path / "b", max_length=5)
    check = check_prompt([long_one, short_one], "a red fox in the snow")
    assert check.token_limit == 5
    assert check.truncated_words == ["in", "the", "snow"]  # 5 tokens: <start> a red fox <end>


# --- Wen attribution per word -------------------------------------------------------------------------------------


def test_wen_attribution_merges_sub_word_pieces_into_the_prompts_words(tmp_path):
    import torch

    from inspector.wen import _word_scores

    tok = _plain_clip_tokenizer(tmp_path / "tok")
    prompt = "Rachel likes a fox"
    pieces = tok.convert_ids_to_tokens(tok(prompt).input_ids)
    # <start> r a c h e l</w> l i k e s</w> a</w> fox</w> <end>: "rachel" and "likes" are spelled in pieces
    rachel = list(range(1, pieces.index("l</w>") + 1))
    likes = list(range(rachel[-1] + 1, pieces.index("s</w>") + 1))
    a, fox = pieces.index("a</w>", likes[-1]), pieces.index("fox</w>")
    assert len(rachel) > 1 and len(likes) > 1
    grad = torch.zeros(len(pieces) + 3, 4)  # rows for padding after the end marker too
    grad[:, 0] = torch.arange(1, len(pieces) + 4, dtype=torch.float32)  # the norm of row p is p + 1
    scores = dict(_word_scores(SimpleNamespace(tokenizer=tok), prompt, grad))
    assert list(scores) == ["Rachel", "likes", "a", "fox"]  # words as written: no fragments, no markers
    assert scores["Rachel"] == pytest.approx(float(np.sqrt(sum((p + 1) ** 2 for p in rachel))))
    assert scores["likes"] == pytest.approx(float(np.sqrt(sum((p + 1) ** 2 for p in likes))))
    assert scores["a"] == pytest.approx(a + 1) and scores["fox"] == pytest.approx(fox + 1)


def test_wen_attribution_leaves_out_words_past_the_token_limit(tmp_path):
    import torch

    from inspector.wen import _word_scores

    tok = _plain_clip_tokenizer(tmp_path / "tok", max_length=5)
    grad = torch.ones(5, 4)  # the text encoder saw 5 positions: <start> a red fox <end>
    assert [w for w, _ in _word_scores(SimpleNamespace(tokenizer=tok), "a red fox in the snow", grad)] == \
        ["a", "red", "fox"]


@needs_demo
def test_wen_on_the_demo_names_unknown_words_whole(monkeypatch):
    from inspector.generation import load_model
    from inspector.prompt_words import steering_words
    from inspector.wen import wen_score

    model = load_model("demo", device="cpu")
    result = wen_score(model.pipeline, "Rachel Michetti", seeds=[0], num_inference_steps=5,
                       attribute_tokens=True)
    assert [w for w, _ in result.tokens] == ["Rachel", "Michetti"]
    assert all(s >= 0 for _, s in result.tokens)
    text = steering_words(result.tokens, ["Rachel", "Michetti"])
    assert "Rachel" in text and "(unknown to the model)" in text
    assert " r " not in f" {text} " and " h " not in f" {text} "


# --- captions in the index ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_index():
    from inspector.session import open_index

    return open_index("demo")


def test_a_prompt_equal_to_a_demo_caption_is_matched_exactly_and_said_to_be_the_strongest_cue(demo_index):
    from inspector.prompt_words import check_words

    (best, *_) = demo_index.match_captions("A cup of coffee!")
    assert best.caption == "a cup of coffee" and best.exact and best.images == 200
    facts = check_words([], demo_index, "a cup of coffee")
    assert facts.exact_caption.caption == "a cup of coffee"
    assert facts.words_in_no_caption == []
    (note,) = facts.notes()
    assert "equals a caption in the index: “a cup of coffee” (200 images, 1 distinct)" in note
    assert "strongest memorization cue" in note and "Carlini" in note


def test_prompt_words_in_no_caption_are_named_and_the_closest_captions_shown(demo_index):
    from inspector.prompt_words import check_words

    facts = check_words([], demo_index, "morning cup")
    assert facts.words_in_no_caption == ["morning"]
    assert [m.caption for m in facts.caption_matches] == ["a cup of coffee"]
    assert not facts.caption_matches[0].exact and facts.caption_matches[0].shared == ("cup",)
    notes = " | ".join(facts.notes())
    assert "closest to the prompt: “a cup of coffee” (200 images, 1 distinct, shares: cup)" in notes
    assert "no caption in the index contains: morning" in notes
    assert demo_index.match_captions("rachel michetti") == []
    assert demo_index.caption_vocabulary_missing(["Rachel", "cat!"]) == ["Rachel"]


def _small_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    src = root / "images"
    src.mkdir()
    for k, caption in enumerate(["a red fox", "a red fox", "a blue car", "café au lait"]):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(src / f"{k}.png")
        (src / f"{k}.txt").write_text(caption, encoding="utf-8")
    return src


def test_an_index_built_before_caption_search_is_scanned_with_a_note_and_resume_adds_the_tables(tmp_path):
    from inspector.training_index import TrainingIndex, build_index

    src = _small_folder(tmp_path)
    out = tmp_path / "index"
    build_index(src, out, workers=1, comparison_size=32)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["captions"]["distinct"] == 3 and manifest["database"]["schema_version"] == 2
    with TrainingIndex.open(out) as index:
        assert index.caption_search_note() is None
        assert [m.caption for m in index.match_captions("Cafe au lait")] == ["café au lait"]
        assert index.match_captions("a red fox")[0].images == 2
    # An index of schema 1 had no caption tables.
    with sqlite3.connect(out / "index.db") as conn:
        for table in ("caption_terms", "caption_search", "caption_counts"):
            conn.execute(f"DROP TABLE {table}")
    with TrainingIndex.open(out) as index:
        (best, *_) = index.match_captions("a red fox")
        assert best.exact and best.images == 2 and best.unique_images == 2
        assert index.caption_vocabulary_missing(["fox", "zebra"]) == ["zebra"]
        assert "--resume" in index.caption_search_note()
        assert index.info(disk_usage=False)["captions"] == {"distinct": 3, "full_text_search": False}
    build_index(src, out, resume=True, workers=1)
    with TrainingIndex.open(out) as index:
        assert index.caption_search_note() is None
        assert index.match_captions("a blue car")[0].exact


def test_an_index_without_captions_gives_no_caption_facts(tmp_path):
    from inspector.prompt_words import check_words
    from inspector.training_index import TrainingIndex, build_index

    src = _small_folder(tmp_path)
    for f in src.glob("*.txt"):
        f.unlink()
    build_index(src, tmp_path / "index", workers=1, comparison_size=32)
    with TrainingIndex.open(tmp_path / "index") as index:
        facts = check_words([], index, "a red fox")
    assert facts.caption_matches == [] and facts.words_in_no_caption == [] and facts.notes() == []


# --- the command line ---------------------------------------------------------------------------------------------


@needs_demo
@pytest.mark.slow
def test_inspect_json_carries_the_unknown_words_and_the_caption_facts(capsys):
    from inspector.cli import main

    assert main(["inspect", "Rachel Michetti", "--n", "1", "--steps", "2", "--no-wen", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unknown_words"] == ["Rachel", "Michetti"]
    assert doc["words_in_no_caption"] == ["Rachel", "Michetti"]
    assert any("does not know: Rachel, Michetti" in n for n in doc["notes"])
    assert main(["inspect", "a cup of coffee", "--n", "1", "--steps", "2", "--no-wen", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unknown_words"] == [] and doc["prompt_equals_caption"] is True
    assert doc["caption_matches"][0] == {"caption": "a cup of coffee", "images": 200, "unique_images": 1,
                                         "exact": True, "coverage": 1.0,
                                         "shared_words": ["a", "cup", "of", "coffee"]}


@needs_demo
@pytest.mark.slow
def test_inspect_prints_the_notes_and_names_unknown_words_among_the_steering_words(capsys):
    from inspector.cli import main

    assert main(["inspect", "morning cup", "--n", "1", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "note: the model's tokenizer does not know: morning" in out
    assert "morning" in out and "(unknown to the model)" in out


@pytest.mark.slow
def test_the_demo_index_gains_caption_search_when_opened_by_a_newer_inspector(tmp_path):
    from inspector.training_index import demo_index

    with demo_index(tmp_path) as index:
        folder = index.folder
    with sqlite3.connect(folder / "index.db") as conn:  # as an index written before caption search
        for table in ("caption_terms", "caption_search", "caption_counts"):
            conn.execute(f"DROP TABLE {table}")
    with demo_index(tmp_path) as index:
        assert index.has_caption_search
        assert index.info(disk_usage=False)["captions"] == {"distinct": 7, "full_text_search": True}
        assert index.match_captions("the cameraman")[0].exact


@needs_demo
@pytest.mark.slow
def test_scan_json_names_the_unknown_words_of_each_prompt(tmp_path, capsys):
    from inspector.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("morning cup\na cup of coffee\n", encoding="utf-8")
    assert main(["scan", str(prompts), "--n", "1", "--steps", "2", "--casebook", str(tmp_path / "cb.db"),
                 "--json"]) == 0
    rows = {r["prompt"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["morning cup"]["unknown_words"] == ["morning"]
    assert rows["morning cup"]["words_in_no_caption"] == ["morning"]
    assert any("does not know: morning" in n for n in rows["morning cup"]["notes"])
    assert rows["a cup of coffee"]["prompt_equals_caption"] is True
