"""Carlini's clique filter and the suggestion rule, on constructed data."""

from __future__ import annotations

import numpy as np
import pytest

from inspector import metrics
from inspector.extraction import (
    largest_clique,
    min_flag_clique,
    pairwise_tiled_l2,
    suggest_verdict,
)
from inspector.findings import Neighbour


def nb(tiled, cal=None, sem=None, dup=1, rank=1):
    return Neighbour(rank=rank, item_id=rank, source=f"s{rank}", caption="c", duplicate_count=dup, l2=tiled / 2,
                     tiled_l2=tiled, ssim=0.5, calibrated_l2=cal, semantic_similarity=sem)


def test_pairwise_tiled_l2_matches_the_metric_pair_by_pair():
    rng = np.random.default_rng(0)
    ims = rng.random((6, 16, 16, 3))
    d = pairwise_tiled_l2(ims)
    for i in range(6):
        for j in range(6):
            assert d[i, j] == pytest.approx(metrics.tiled_l2(ims[i], ims[j]), abs=1e-9)


def test_near_identical_generations_form_a_flagged_clique_with_a_medoid():
    rng = np.random.default_rng(1)
    base = rng.random((16, 16, 3))
    copies = [np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1) for _ in range(12)]
    others = [rng.random((16, 16, 3)) for _ in range(20)]
    d = pairwise_tiled_l2(np.stack(copies + others))
    result = largest_clique(d)
    assert result.members == list(range(12))
    assert result.flagged and result.size == 12
    assert result.medoid in result.members


def test_diverse_generations_are_not_flagged():
    rng = np.random.default_rng(2)
    d = pairwise_tiled_l2(rng.random((32, 16, 16, 3)))
    result = largest_clique(d)
    assert not result.flagged and result.size == 0 and result.medoid is None


def test_the_flag_size_scales_with_n_like_the_paper():
    assert min_flag_clique(500) == 10
    assert min_flag_clique(1000) == 20
    assert min_flag_clique(32) == 3
    with pytest.raises(ValueError):
        min_flag_clique(0)


@pytest.mark.parametrize(
    "neighbours, verdict",
    [
        ([nb(0.06, cal=0.3, dup=200)], "memorized"),
        ([nb(0.15, cal=0.9)], "memorized"),  # at the threshold counts as a copy
        ([nb(0.16, cal=0.8)], "likeness?"),
        ([nb(0.3, cal=1.2, sem=0.95)], "likeness?"),
        ([nb(0.3, cal=1.2, sem=0.5)], "novel"),
        ([nb(0.3, cal=1.0)], "novel"),  # calibrated l2 must be below 1
        ([], "novel"),
    ],
)
def test_the_suggestion_rule_on_constructed_distances(neighbours, verdict):
    s = suggest_verdict(neighbours)
    assert s.verdict == verdict
    assert s.reason


def test_memorized_reason_names_the_duplicates():
    s = suggest_verdict([nb(0.05, dup=200)])
    assert "200 times" in s.reason and "0.05" in s.reason


@pytest.mark.parametrize(
    "tiled, verdict, margin, borderline, words",
    [
        (0.14, "memorized", 0.01, True, "borderline: 0.010 under the 0.15 line"),
        (0.15, "memorized", 0.0, True, "borderline: exactly on the 0.15 line"),
        (0.10, "memorized", 0.05, False, None),
        (0.13, "memorized", 0.02, False, None),  # 0.02 inside is no longer borderline: (0.13, 0.15]
        (0.16, "novel", -0.01, True, "borderline: just above the line (by 0.010 over 0.15)"),
        (0.17, "novel", -0.02, True, "borderline: just above the line (by 0.020 over 0.15)"),
        (0.20, "novel", -0.05, False, None),
    ],
)
def test_a_verdict_within_002_of_the_line_is_called_borderline_with_its_margin(tiled, verdict, margin,
                                                                                borderline, words):
    s = suggest_verdict([nb(tiled, cal=1.5, rank=1), nb(tiled + 0.1, cal=1.6, rank=2)])
    assert s.verdict == verdict
    assert s.evidence["margin"] == pytest.approx(margin, abs=1e-9)
    assert s.evidence["borderline"] is borderline
    if words:
        assert words in s.reason
    else:
        assert "borderline" not in s.reason


def test_a_likeness_just_above_the_line_says_borderline_too():
    s = suggest_verdict([nb(0.16, cal=0.8)])
    assert s.verdict == "likeness?" and s.evidence["borderline"] and "just above the line" in s.reason


def test_the_badge_tooltip_and_the_inspect_json_carry_borderline():
    from inspector.commands.inspect import _generation_dict
    from inspector.session import Inspected

    item = Inspected(position=0, seed=3, image=np.zeros((8, 8, 3), np.uint8), png=b"", provenance={},
                     neighbours=[nb(0.14)], suggestion=suggest_verdict([nb(0.14)]))
    assert "borderline: 0.010 under the 0.15 line" in item.tooltip()
    record = _generation_dict(item, None)
    assert record["borderline"] is True and record["margin"] == pytest.approx(0.01)
    assert "borderline" in record["reason"]


def test_a_failed_load_does_not_poison_the_cache():
    from inspector.session import _Cache

    calls = []

    def loader(key):
        calls.append(key)
        if key == "bad":
            raise ValueError("bad model")
        return key.upper()

    cache = _Cache(loader)
    assert cache.get("demo") == "DEMO"
    with pytest.raises(ValueError):
        cache.get("bad")
    assert cache.get("demo") == "DEMO"
    assert calls == ["demo", "bad", "demo"]
