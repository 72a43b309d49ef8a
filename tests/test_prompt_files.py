"""`inspector scan` reads the prompt files research teams use, and refuses files it cannot tell, with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from inspector.errors import UserError
from inspector.prompt_files import CSV, JSON, JSONL, PARQUET, TEXT, TSV, load_prompt_file, read_prompts
from inspector.resources import resource_path

# Three lines in the shape of Wen et al. 2024's sdv1_500_memorized.jsonl (keys caption, index, url), with the
# HTML entities and tags LAION captions hold; entities in the url are not prompts.
WEN_LINES = [
    {"caption": "Tom &amp; Jerry: The <i>Movie</i> Poster", "index": 1030727993,
     "url": "https://example.com/a.jpg?w=100&amp;h=100"},
    {"caption": "Watch the Trailer for NBC&#39;s <i>Constantine</i>", "index": 1348480971,
     "url": "http://example.com/constantine.jpg"},
    {"caption": "Netflix Strikes Deal with AT&T for Faster Streaming", "index": 1349117865,
     "url": "http://example.com/netflix.jpeg"},
    {"caption": "Tom &amp; Jerry: The <i>Movie</i> Poster", "index": 1, "url": "https://example.com/dup.jpg"},
]
WEN_PROMPTS = ["Tom & Jerry: The <i>Movie</i> Poster", "Watch the Trailer for NBC's <i>Constantine</i>",
               "Netflix Strikes Deal with AT&T for Faster Streaming"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_the_wen_et_al_memorized_prompt_list_reads_as_its_captions_with_entities_unescaped(tmp_path):
    f = write(tmp_path / "sdv1_500_memorized.jsonl", "".join(json.dumps(r) + "\n" for r in WEN_LINES))
    source = load_prompt_file(f)
    assert source.prompts == WEN_PROMPTS
    assert (source.format, source.column) == (JSONL, "caption")
    assert "3 prompts" in source.describe() and "'caption'" in source.describe()


def test_the_same_list_saved_as_txt_or_json_is_still_read_as_json_lines(tmp_path):
    lines = "".join(json.dumps(r) + "\n" for r in WEN_LINES)
    for name in ("wen.txt", "wen.json"):
        source = load_prompt_file(write(tmp_path / name, lines))
        assert (source.format, source.prompts) == (JSONL, WEN_PROMPTS), name


def test_json_lines_of_plain_strings(tmp_path):
    f = write(tmp_path / "p.jsonl", '"a castle"\n\n"a castle"\n"the cameraman"\n')
    assert read_prompts(f) == ["a castle", "the cameraman"]


def test_the_demo_prompt_file_reads_as_its_six_prompts():
    source = load_prompt_file(resource_path("demo", "prompts.json"))
    assert source.format == JSON
    assert source.prompts == ["astronaut eileen collins", "the cameraman", "a cup of coffee", "chelsea the cat",
                              "colourful circles", "colourful squares"]


@pytest.mark.parametrize("document, prompts", [
    (["a castle", "a cat", "a castle"], ["a castle", "a cat"]),
    ([{"prompt": "a castle", "id": 1}, {"caption": "a cat"}], ["a castle", "a cat"]),
    ({"name": "my sweep", "prompts": ["a castle", "a cat"], "negative": ["blurry"]}, ["a castle", "a cat"]),
    ({"prompt": "just one"}, ["just one"]),
])
def test_json_arrays_of_strings_or_objects(tmp_path, document, prompts):
    assert read_prompts(write(tmp_path / "p.json", json.dumps(document, indent=2))) == prompts


def test_a_csv_with_a_header_reads_the_first_prompt_column_with_quoted_commas_and_newlines(tmp_path):
    f = write(tmp_path / "p.csv", 'id,caption,url\n1,"a castle, at night",http://x/1\n'
                                  '2,"two\nlines &amp; more",http://x/2\n3,,http://x/3\n4,"a castle, at night",x\n')
    source = load_prompt_file(f)
    assert source.prompts == ["a castle, at night", "two lines & more"]
    assert (source.format, source.column) == (CSV, "caption")


def test_the_column_option_picks_another_column_and_names_the_columns_when_missing(tmp_path):
    f = write(tmp_path / "p.csv", "TEXT,prompt\nfrom text,from prompt\n")
    assert read_prompts(f) == ["from prompt"]  # prompt comes before TEXT
    assert read_prompts(f, column="TEXT") == ["from text"]
    with pytest.raises(UserError, match=r"no column 'Text' \(its columns: 'TEXT', 'prompt'\)"):
        read_prompts(f, column="Text")  # case as given


def test_a_tsv_and_a_csv_that_is_really_tab_separated(tmp_path):
    body = "text\tsource\nthe cameraman\tlaion\nchelsea the cat\tlaion\n"
    for name in ("p.tsv", "p.csv"):
        source = load_prompt_file(write(tmp_path / name, body))
        assert (source.format, source.prompts) == (TSV, ["the cameraman", "chelsea the cat"]), name


def test_laion_metadata_and_img2dataset_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    laion = pa.table({"SAMPLE_ID": [1, 2, 3, 4], "URL": ["u1", "u2", "u3", "u4"],
                      "TEXT": ["Tom &amp; Jerry", None, "", "a castle"], "similarity": [0.3, 0.3, 0.3, 0.3]})
    pq.write_table(laion, tmp_path / "laion.parquet")
    source = load_prompt_file(tmp_path / "laion.parquet")
    assert (source.format, source.column, source.prompts) == (PARQUET, "TEXT", ["Tom & Jerry", "a castle"])
    shard = pa.table({"key": ["000000000"], "caption": ["the cameraman"], "url": ["file:///x.png"],
                      "status": ["success"]})
    pq.write_table(shard, tmp_path / "00000.parquet")
    assert read_prompts(tmp_path / "00000.parquet") == ["the cameraman"]
    with pytest.raises(UserError, match=r"no column 'nope' \(its columns: 'key', 'caption'"):
        read_prompts(tmp_path / "00000.parquet", column="nope")
    pq.write_table(pa.table({"SAMPLE_ID": [1]}), tmp_path / "ids.parquet")
    with pytest.raises(UserError, match=r"none of the columns.*'SAMPLE_ID'.*--column"):
        read_prompts(tmp_path / "ids.parquet")


def test_a_parquet_file_is_recognised_by_its_content_whatever_its_name(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"caption": ["a castle"]}), tmp_path / "prompts.dat")
    assert load_prompt_file(tmp_path / "prompts.dat").format == PARQUET


def test_plain_text_stays_plain_text(tmp_path):
    f = write(tmp_path / "p.txt", "[draft] a castle\n{not json} a cat\n")
    source = load_prompt_file(f)
    assert (source.format, source.prompts) == (TEXT, ["[draft] a castle", "{not json} a cat"])
    with pytest.raises(UserError, match="--column applies to"):
        read_prompts(f, column="caption")


BAD_FILES = [
    ("garbage.txt", os.urandom(64) + b"\x00\x01" + os.urandom(64), "binary data|not UTF-8"),
    ("empty.txt", b"", "no prompts"),
    ("blank.jsonl", b"\n \n", "no prompts"),
    ("no-column.csv", b"id,url\n1,http://x\n", r"none of the columns prompt, caption, text, TEXT \(its header: "
                                                r"'id', 'url'\)"),
    ("headerless.csv", b"a castle\na cat\n", r"none of the columns.*'a castle'.*first line must name"),
    ("number.json", b"42", "holds a number, not prompts"),
    ("numbers.json", b"[1, 2]", "item 0 is a number, not a prompt"),
    ("object.json", b'{"title": "sweep", "count": 3}', "no array of prompts"),
    ("wrong-keys.jsonl", b'{"index": 1, "url": "u"}\n', r"line 1 has none of the keys.*'index', 'url'"),
    ("broken.jsonl", b'{"caption": "a"}\n{"caption": \n', "line 2 is not JSON"),
    ("broken.json", b'{"prompts": ["a", }', "not valid JSON"),
    ("text.parquet", b"a castle\n", "not a parquet file"),
    ("prompts.md", b"a castle\na cat\n", "cannot tell the format"),
    ("missing.txt", None, "not found"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_file_that_holds_no_readable_prompts_is_refused_with_a_reason(tmp_path, name, content, message):
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_prompts(f)


@pytest.mark.parametrize("name, content", [("garbage.txt", bytes(range(256)) * 4), ("empty.txt", b""),
                                           ("no-column.csv", b"id,url\n1,x\n"), ("numbers.json", b"[1, 2]")])
def test_the_scan_command_refuses_a_bad_prompt_file_with_exit_2_and_one_line(tmp_path, name, content):
    f = tmp_path / name
    f.write_bytes(content)
    book = tmp_path / "casebook.db"
    proc = subprocess.run([sys.executable, "-m", "inspector", "scan", str(f), "--casebook", str(book), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("inspector: error: ")
    assert not book.exists() and not list(tmp_path.glob("casebook.db.scan-*")), "nothing half-written"
