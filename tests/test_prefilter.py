"""The one-step prefilter (`scan --prefilter-top K`): every prompt scored with Wen et al.'s score first, each score
on the record (a run in the casebook and a line in the scan folder), the full generate-and-filter only for the top
K; a kill between the two records scores nothing twice; bad options are refused before any work."""

from __future__ import annotations

import json

import pytest

from inspector.errors import UserError
from inspector.prefilter import Prefilter, PrefilterSettings
from inspector.resources import demo_model_dir, demo_prompts_file
from inspector.scan import ScanState, scan_settings

needs_demo = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")
DEMO_PROMPTS = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
SIX = [p for group in DEMO_PROMPTS.values() for p in group]
FACTS = {"settings": {"steps": 25}, "model_id": "demo", "model_sha256": "0" * 64}


def _state(tmp_path) -> ScanState:
    return ScanState.for_scan(tmp_path / "casebook.db", tmp_path / "prompts.txt", scan_settings(n=2, steps=2))


@pytest.mark.slow
@needs_demo
def test_the_prefilter_scores_every_prompt_and_scans_only_the_top_k(tmp_path, capsys):
    from inspector.casebook import Casebook
    from inspector.cli import main

    prompts_file, book = tmp_path / "prompts.txt", tmp_path / "casebook.db"
    prompts_file.write_text("\n".join(SIX) + "\n", encoding="utf-8")
    assert main(["scan", str(prompts_file), "--casebook", str(book), "--n", "2", "--steps", "2",
                 "--prefilter-top", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)

    assert [r["prompt"] for r in rows] == SIX and all(r["complete"] for r in rows)
    scores = {r["prompt"]: r["prefilter_score"] for r in rows}
    assert all(isinstance(s, float) and s >= 0 for s in scores.values())
    top = sorted(SIX, key=lambda p: -scores[p])[:2]
    assert {r["prompt"] for r in rows if r["selected"]} == set(top)
    assert set(top) <= set(DEMO_PROMPTS["memorized"]), scores  # the demo's copied prompts score highest
    for r in rows:
        assert r["set_aside"] == (r["prompt"] not in top)
        assert r["generated"] == (2 if r["prompt"] in top else 0)
    assert sorted(r["prefilter_rank"] for r in rows) == list(range(1, 7))
    state = _state(tmp_path)
    assert {p for p in SIX if state.result(p)} == set(top), "generated for a prompt outside the top K"
    with Casebook.open(book) as cb:
        runs = cb.runs(kind="scan")
    prefilter_runs = {r.prompt: r for r in runs if r.settings.get("prefilter")}
    assert {p: (r.wen_score, r.n_requested, r.settings["prefilter"]) for p, r in prefilter_runs.items()} == \
        {p: (scores[p], 0, {"seeds": 4, "first_steps": 1}) for p in SIX}
    assert {r.prompt for r in runs if not r.settings.get("prefilter")} == set(top)  # the full scans' runs


@needs_demo
def test_a_prefilter_resumed_scores_only_the_prompts_left_and_another_k_reuses_every_score(tmp_path):
    from inspector.prefilter import prefilter_locally

    state = _state(tmp_path)
    prefilter = Prefilter.open(state, PrefilterSettings(top=1), resume=False)
    prefilter.record([{"prompt": p, "score": s, "per_seed": [s], "steps_used": 1, "seconds": 0.1}
                      for p, s in (("the cameraman", 0.5), ("colourful squares", 0.1))], FACTS)
    with pytest.raises(UserError, match="--resume"):
        Prefilter.open(state, PrefilterSettings(top=1), resume=False)
    events = []
    resumed = Prefilter.open(state, PrefilterSettings(top=2), resume=True)
    assert resumed.missing(["the cameraman", "colourful squares", "colourful circles"]) == ["colourful circles"]
    assert prefilter_locally(resumed, ["the cameraman", "colourful squares", "colourful circles"], model="demo",
                             seed=0, steps=2, guidance=None, progress=events.append)
    assert [e.done for e in events] == [2, 3]  # only the prompt left was scored
    assert resumed.scores["the cameraman"]["score"] == 0.5
    assert resumed.selected(["the cameraman", "colourful squares", "colourful circles"]) == \
        ["the cameraman", "colourful squares"]


def test_a_kill_between_the_casebook_run_and_the_score_line_scores_nothing_twice(tmp_path):
    from inspector.casebook import Casebook

    state = _state(tmp_path)
    prefilter = Prefilter.open(state, PrefilterSettings(top=1), resume=False)
    prefilter.record([{"prompt": "a", "score": 0.25, "per_seed": [0.25], "steps_used": 1, "seconds": 0.1},
                      {"prompt": "b", "score": 0.75, "per_seed": [0.75], "steps_used": 1, "seconds": 0.1}], FACTS)
    data = prefilter.path.read_bytes()
    prefilter.path.write_bytes(data[: data.rindex(b'"score"')])  # the kill cut the last line: b's run is in

    resumed = Prefilter.open(state, PrefilterSettings(top=1), resume=True)
    assert resumed.missing(["a", "b"]) == []
    assert resumed.scores["b"]["score"] == 0.75 and resumed.selected(["a", "b"]) == ["b"]
    resumed.record([{"prompt": "b", "score": 0.75, "per_seed": [0.75], "steps_used": 1, "seconds": 0.1}], FACTS)
    with Casebook.open(state.casebook) as cb:
        runs = cb.runs(kind="scan")
    assert sorted(r.prompt for r in runs) == ["a", "b"]  # one run each, never two
    assert runs[0].in_words() == "a: prefilter Wen score 0.25 (first 1 step, 4 seeds), no generations"
    assert Prefilter(state, PrefilterSettings(top=1)).scores.keys() == {"a", "b"}


def test_top_k_and_a_threshold_choose_highest_first(tmp_path):
    state = _state(tmp_path)
    prefilter = Prefilter.open(state, PrefilterSettings(top=2, threshold=0.2), resume=False)
    prompts = ["low", "high", "mid", "tie"]
    prefilter.record([{"prompt": p, "score": s, "per_seed": [s], "steps_used": 1, "seconds": 0.1}
                      for p, s in zip(prompts, [0.1, 0.9, 0.3, 0.3], strict=True)], FACTS)
    assert prefilter.ranked(prompts) == {"high": 1, "mid": 2, "tie": 3, "low": 4}  # ties in file order
    assert prefilter.selected(prompts) == ["high", "mid"]
    only_threshold = Prefilter(state, PrefilterSettings(threshold=0.3))
    assert only_threshold.selected(prompts) == ["high", "mid", "tie"]


@pytest.mark.parametrize("options, words", [
    (["--prefilter-seeds", "2"], "--prefilter-top K or --prefilter-threshold X"),
    (["--prefilter-top", "0"], "--prefilter-top"),
    (["--prefilter-threshold", "nan"], "--prefilter-threshold"),
    (["--prefilter-top", "2", "--prefilter-seeds", "65"], "--prefilter-seeds"),
    (["--workers", "2"], "--workers needs --ray"),
])
def test_bad_prefilter_and_cluster_options_are_refused_before_any_work(tmp_path, capsys, options, words):
    from inspector.cli import main

    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("the cameraman\n", encoding="utf-8")
    assert main(["scan", str(prompts_file), "--casebook", str(tmp_path / "c.db"), *options]) == 2
    assert words in capsys.readouterr().err
    assert not list(tmp_path.glob("c.db.scan-*"))


def test_ray_missing_is_named_with_the_extra_to_install(tmp_path, capsys, monkeypatch):
    import sys

    from inspector.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("the cameraman\n", encoding="utf-8")
    assert main(["scan", str(prompts_file), "--casebook", str(tmp_path / "c.db"), "--ray", "local"]) == 2
    assert "memorization-inspector[ray]" in capsys.readouterr().err
