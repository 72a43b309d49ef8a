"""`inspector scan`: a messy prompt file, and a scan that resumes without duplicates."""

from __future__ import annotations

import pytest

from inspector.errors import UserError
from inspector.resources import demo_model_dir
from inspector.scan import read_prompts, scan


def test_a_messy_prompt_file_gives_each_distinct_prompt_once(tmp_path):
    long_prompt = "a very long prompt " * 40
    f = tmp_path / "prompts.txt"
    f.write_text("\ufeffthe cameraman\n\n   \nthe  cameraman \nchelsea the cat\r\n" + long_prompt + "\n",
                 encoding="utf-8")
    prompts = read_prompts(f)
    assert prompts == ["the cameraman", "chelsea the cat", " ".join(long_prompt.split())]


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"\n\n  \n", "no prompts"),
                                              (b"\xff\xfe\xfa bad", "UTF-8")])
def test_bad_prompt_files_are_refused_with_a_reason(tmp_path, content, message):
    f = tmp_path / "prompts.txt"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_prompts(f)


@pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")
def test_an_interrupted_scan_resumes_without_duplicate_findings(tmp_path):
    from inspector.casebook import Casebook

    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("astronaut eileen collins\ncolourful squares\n", encoding="utf-8")
    prompts = read_prompts(prompts_file)
    book = tmp_path / "casebook.db"
    kwargs = dict(n=3, steps=5, prompts_file=prompts_file)
    first = scan(prompts, book, **kwargs)
    done = next(first)  # the first prompt finishes, then the scan is interrupted
    first.close()
    assert done["prompt"] == "astronaut eileen collins" and done["findings"]
    with pytest.raises(UserError, match="--resume"):
        next(scan(prompts, book, **kwargs))
    results = list(scan(prompts, book, resume=True, **kwargs))
    assert [r["prompt"] for r in results] == prompts
    assert results[0].get("resumed") and results[0]["findings"] == done["findings"]
    with Casebook.open(book) as cb:
        rows = cb.findings()
    keys = [(r.prompt, r.seed, r.image_sha256) for r in rows]
    assert len(keys) == len(set(keys)), "a finding was recorded twice"
    assert all(r.label == "unlabeled" for r in rows)
