"""The benchmark's scores: ground truth per generation, the confusion matrix, AUCs and the extraction curve,
on constructed cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.demo.benchmark_eval import (
    PromptResult,
    aucs,
    confusion,
    extraction_curve,
    prompt_labels,
    truth_of,
)


def _result(prompt, kind, copies, truths, suggested, clique=0, wen=0.0):
    return PromptResult(prompt=prompt, kind=kind, copies=copies, truths=truths, suggested=suggested,
                        nearest_tiled_l2=[0.5] * len(truths), exact_tiled_l2=[0.5] * len(truths), clique_size=clique,
                        clique_flagged=clique >= 3, wen={"wen_1step_4gen": wen})


def test_truth_is_a_near_copy_then_the_own_subject_then_novel():
    rng = np.random.default_rng(0)
    train = rng.random((3, 8, 8, 3))
    captions = ["photo of amber", "photo of birch", "colourful dots"]
    assert truth_of(train[0] + 0.01, train, captions, "photo of birch", "duplicated")[0] == "memorized"
    # Far from every image (tiled l2 > 0.15) but nearest to its own subject: a likeness of it.
    blurred = train[1] * 0.5 + 0.25
    assert truth_of(blurred, train, captions, "photo of birch", "duplicated")[0] == "likeness"
    # The same picture from a prompt of another subject, or of a novel family, is novel.
    assert truth_of(blurred, train, captions, "photo of amber", "duplicated")[0] == "novel"
    assert truth_of(blurred, train, captions, "colourful dots", "novel")[0] == "novel"


def test_confusion_matrix_precision_and_recall():
    results = [
        _result("a", "duplicated", 200, ["memorized"] * 3 + ["likeness"], ["memorized"] * 3 + ["memorized"]),
        _result("b", "likeness", 0, ["likeness", "likeness", "novel"], ["likeness?", "novel", "novel"]),
    ]
    c = confusion(results)
    assert c["matrix"]["memorized"]["memorized"] == 3
    assert c["matrix"]["likeness"]["memorized"] == 1
    assert c["scores"]["memorized"]["precision"] == pytest.approx(3 / 4)
    assert c["scores"]["memorized"]["recall"] == 1.0
    assert c["scores"]["likeness?"]["recall"] == pytest.approx(1 / 3)
    assert c["scores"]["novel"]["precision"] == pytest.approx(1 / 2)
    assert c["generations"] == 7


def test_prompt_auc_by_hand():
    # Outcome split: a (4/4 near copies) and b (2/4) are memorized, c and d have none, e (1/4) is left out.
    mem, nov = "memorized", "novel"
    results = [
        _result("a", "duplicated", 200, [mem] * 4, [mem] * 4, clique=4, wen=3.0),
        _result("b", "duplicated", 100, [mem, mem, nov, nov], [mem] * 4, clique=2, wen=1.0),
        _result("c", "novel", 0, [nov] * 4, [nov] * 4, clique=0, wen=2.0),
        _result("d", "likeness", 0, [nov] * 4, [nov] * 4, clique=0, wen=0.5),
        _result("e", "duplicated", 1, [mem, nov, nov, nov], [nov] * 4, clique=0, wen=9.0),
    ]
    assert prompt_labels(results)["outcome"] == [1, 1, 0, 0, None]
    got = aucs(results)
    # Wen: positives 3.0, 1.0 against negatives 2.0, 0.5: pairs won 3 of 4.
    assert got["outcome"]["wen_1step_4gen"] == 0.75
    # Clique: 4 and 2 against 0 and 0: every pair won.
    assert got["outcome"]["clique_size"] == 1.0
    assert (got["outcome"]["positives"], got["outcome"]["negatives"], got["outcome"]["left_out"]) == (2, 2, 1)
    # Construction split: a, b, e duplicated against c, d; e's 9.0 wins both of its pairs: 5 of 6.
    assert got["construction"]["wen_1step_4gen"] == pytest.approx(5 / 6, abs=1e-4)


def test_extraction_curve_groups_by_copies():
    mem, nov = "memorized", "novel"
    results = [
        _result("a", "duplicated", 1, [nov] * 4, [nov] * 4),
        _result("b", "duplicated", 1, [mem] + [nov] * 3, [nov] * 4),
        _result("c", "duplicated", 200, [mem] * 4, [mem] * 3 + [nov], clique=4),
        _result("d", "novel", 0, [mem] * 4, [mem] * 4),
    ]
    curve = extraction_curve(results)
    assert [row["copies"] for row in curve] == [1, 200]
    assert curve[0]["extraction_rate"] == 1 / 8 and curve[0]["prompts_extracted"] == 1
    assert curve[1]["extraction_rate"] == 1.0 and curve[1]["suggested_rate"] == 0.75
    assert curve[1]["prompts_flagged_by_clique"] == 1
