"""Signals that a prompt makes the model copy: near-identical cliques among its generations (Carlini et al.
2023), the text-conditional noise magnitude (Wen et al., ICLR 2024), and the one rule that suggests a verdict.

A suggestion is never a label: the person decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inspector.findings import LIKENESS_SUGGESTED, MEMORIZED, NOVEL, Neighbour
from inspector.images import as_float
from inspector.metrics import BORDERLINE_MARGIN, EXTRACTION_THRESHOLD
from inspector.roles import role_of, role_words

#: Carlini et al. connect two generations when their tiled l2 is below this (configurable).
CLIQUE_EDGE_THRESHOLD = 0.1
#: Carlini et al. flag a prompt when 10 of its 500 generations form a clique.
PAPER_CLIQUE_SIZE = 10
PAPER_GENERATIONS = 500
#: Calibrated l2 below this: "far closer than the crowd" (Carlini et al.).
CALIBRATED_THRESHOLD = 1.0
#: Cosine similarity of CLIP embeddings above which a generation may show the same subject, for an embedder
#: without a calibrated threshold of its own (semantic.DEFAULT_LIKENESS_THRESHOLD).
SEMANTIC_THRESHOLD = 0.9
#: (BORDERLINE_MARGIN, the band called borderline either side of the threshold, lives beside the threshold in
#: metrics, where the distance words are; it is imported here for threshold_margin and the report.)


# --- pairwise distances among one prompt's generations ----------------------------------------------------------


def pairwise_tiled_l2(images: np.ndarray | Sequence[np.ndarray], grid: int = 4) -> np.ndarray:
    """Tiled l2 between every pair of N equal-shape images, as an N x N symmetric matrix in [0, 1].

    Vectorised per tile with Gram matrices: ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, so 500 images of 64 px take
    well under a second.
    """
    # Converted to float one tile at a time: 500 images of 256 px stay 98 MB as uint8 instead of 786 MB.
    x = np.asarray(images) if isinstance(images, np.ndarray) else np.stack([np.asarray(im) for im in images])
    if x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"expected N x H x W x 3 images, got shape {x.shape}")
    n, h, w, _ = x.shape
    if grid < 1 or grid > min(h, w):
        raise ValueError(f"grid must be between 1 and {min(h, w)}, got {grid}")
    rows = np.linspace(0, h, grid + 1).round().astype(int)
    cols = np.linspace(0, w, grid + 1).round().astype(int)
    worst = np.zeros((n, n), dtype=np.float64)
    for i in range(grid):
        for j in range(grid):
            tile = as_float(x[:, rows[i]:rows[i + 1], cols[j]:cols[j + 1], :]).reshape(n, -1)
            sq = (tile * tile).sum(axis=1)
            d2 = sq[:, None] + sq[None, :] - 2.0 * (tile @ tile.T)
            np.maximum(d2, 0.0, out=d2)
            worst = np.maximum(worst, d2 / tile.shape[1])
    out = np.sqrt(worst)
    np.fill_diagonal(out, 0.0)
    return out


# --- cliques ----------------------------------------------------------------------------------------------------


def min_flag_clique(n: int) -> int:
    """Clique size that flags a prompt with ``n`` generations: the paper's 10 of 500 (2%), at least 3."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return max(3, math.ceil(PAPER_CLIQUE_SIZE * n / PAPER_GENERATIONS))


@dataclass
class CliqueResult:
    """The largest set of mutually near-identical generations of one prompt."""

    members: list[int]  # indices into the generations, sorted
    medoid: int | None  # the member closest to all others: the extraction candidate
    flagged: bool
    threshold: float
    min_size: int

    @property
    def size(self) -> int:
        return len(self.members)


def largest_clique(distances: np.ndarray, threshold: float = CLIQUE_EDGE_THRESHOLD) -> CliqueResult:
    """Carlini et al.'s generate-and-filter: connect generations closer than ``threshold`` (tiled l2), take the
    largest clique (networkx), and flag the prompt when it reaches :func:`min_flag_clique`."""
    import networkx as nx

    d = np.asarray(distances)
    n = d.shape[0]
    if d.shape != (n, n):
        raise ValueError(f"distances must be a square matrix, got shape {d.shape}")
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    ii, jj = np.nonzero(np.triu(d <= threshold, k=1))
    graph.add_edges_from(zip(ii.tolist(), jj.tolist(), strict=True))
    best: list[int] = []
    if n:
        best = max(nx.find_cliques(graph), key=lambda c: (len(c), -min(c)))
    members = sorted(best) if len(best) > 1 else []
    medoid = None
    if members:
        sub = d[np.ix_(members, members)]
        medoid = members[int(np.argmin(sub.sum(axis=1)))]
    need = min_flag_clique(n) if n else 3
    return CliqueResult(members=members, medoid=medoid, flagged=len(members) >= need, threshold=threshold,
                        min_size=need)


# --- the suggested verdict ----------------------------------------------------------------------------------------


@dataclass
class Suggestion:
    verdict: str  # "memorized", "likeness?" or "novel" (never a label)
    reason: str  # plain words
    evidence: dict = field(default_factory=dict)


def threshold_margin(tiled_l2: float, threshold: float = EXTRACTION_THRESHOLD) -> tuple[float, bool]:
    """How far a tiled l2 is from the extraction threshold, and whether that is close enough to call borderline.

    Returns ``(margin, borderline)``: ``margin = threshold - tiled_l2`` (rounded to 1e-6; >= 0: at or under the
    line, a near copy; < 0: above it), and ``borderline`` true when tiled l2 is in
    (threshold - BORDERLINE_MARGIN, threshold + BORDERLINE_MARGIN], i.e. (0.13, 0.17] for the paper's 0.15.
    """
    margin = round(threshold - tiled_l2, 6)  # rounded so 0.15 - 0.13 is 0.02, not 0.0199999...
    return margin, -BORDERLINE_MARGIN <= margin < BORDERLINE_MARGIN


def borderline_words(margin: float, threshold: float = EXTRACTION_THRESHOLD) -> str:
    """What a borderline margin means, in words a reviewer can act on."""
    if margin == 0:
        return (f"borderline: exactly on the {threshold:.2f} line, so a little blur, crop or another size could "
                "put it above; compare the images yourself")
    if margin > 0:
        return (f"borderline: {margin:.3f} under the {threshold:.2f} line, so a little blur, crop or another "
                "size could put it above; compare the images yourself")
    return (f"borderline: just above the line (by {-margin:.3f} over {threshold:.2f}), so a slightly sharper "
            "comparison could make it a near copy; compare the images yourself")


def suggest_verdict(
    neighbours: Sequence[Neighbour],
    threshold: float = EXTRACTION_THRESHOLD,
    calibrated_threshold: float = CALIBRATED_THRESHOLD,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
    role: str | None = None,
) -> Suggestion:
    """The one place that suggests a verdict (README, "How a verdict is suggested").

    The reason's words follow the index's role (``role``, else the neighbours' ``index_role``): "a training
    image" for the model's training set, "a reference image" for a reference collection.

    - memorized: the nearest training image's tiled l2 is at most 0.15 (Carlini et al.'s extraction bar);
    - likeness?: not that, but calibrated l2 is below 1 (far closer than the crowd of near neighbours), or the
      index's image embedder says the generation shows a subject of the training set: its likeness score (k
      training images at least that similar, ``Neighbour.likeness_score``) is above the embedder's own threshold
      (``Neighbour.likeness_threshold``, calibrated on held-out images; ``semantic_threshold`` when missing);
    - novel: neither.

    ``evidence`` holds ``margin`` (threshold minus the nearest tiled l2, signed) and ``borderline`` (within
    BORDERLINE_MARGIN of the line, either side: :func:`threshold_margin`); a borderline reason says so.
    """
    words = role_words(role or role_of(neighbours))
    if not neighbours:
        return Suggestion(NOVEL, f"no {words.images} to compare with", {})
    best_tiled = min(neighbours, key=lambda nb: nb.tiled_l2)
    evidence = {"nearest_tiled_l2": best_tiled.tiled_l2, "nearest_item_id": best_tiled.item_id}
    evidence["margin"], evidence["borderline"] = threshold_margin(best_tiled.tiled_l2, threshold)
    borderline = f"; {borderline_words(evidence['margin'], threshold)}" if evidence["borderline"] else ""
    if best_tiled.tiled_l2 <= threshold:
        return Suggestion(
            MEMORIZED,
            f"near copy of {words.a_image}: tiled l2 {best_tiled.tiled_l2:.3f} is at most {threshold:.2f}"
            + (f"; that image {words.occurs(best_tiled.duplicate_count)}"
               if best_tiled.duplicate_count > 1 else "") + borderline,
            evidence,
        )
    # Carlini et al.'s calibrated l2 is about the image nearest by l2 (the index always returns it among the
    # four, which it orders by tiled l2): each neighbour's value is its own l2 over the same crowd.
    nearest = min(neighbours, key=lambda nb: (nb.l2, nb.rank))
    cal = nearest.calibrated_l2
    if cal is not None:
        evidence["calibrated_l2"] = cal
    if cal is not None and cal < calibrated_threshold:
        return Suggestion(
            LIKENESS_SUGGESTED,
            f"no near copy (tiled l2 {best_tiled.tiled_l2:.2f} > {threshold:.2f}), but the nearest image is far "
            f"closer than the other near neighbours (calibrated l2 {cal:.2f} < {calibrated_threshold:.2f})"
            + borderline,
            evidence,
        )
    scored = next((nb for nb in neighbours if nb.likeness_score is not None), None)
    sims = [nb.semantic_similarity for nb in neighbours if nb.semantic_similarity is not None]
    if sims:
        evidence["semantic_similarity"] = max(sims)
    if scored is not None:
        # The index's embedder scored the generation against all its images, with its own calibrated threshold.
        score, k = float(scored.likeness_score), int(scored.likeness_k or 1)
        limit = semantic_threshold if scored.likeness_threshold is None else float(scored.likeness_threshold)
        evidence.update(likeness_score=score, likeness_threshold=limit, likeness_k=k)
        if score > limit:
            who = (f"the most similar {words.image} scores {score:.2f}" if k == 1 else
                   f"{k} {words.images} score {score:.2f} or more")
            return Suggestion(
                LIKENESS_SUGGESTED,
                f"no near copy, but it looks like the same subject: {who} on the index's image embedder, above "
                f"its likeness threshold {limit:.2f}" + borderline,
                evidence,
            )
    elif sims and max(sims) > semantic_threshold:  # findings recorded before likeness scores existed
        return Suggestion(
            LIKENESS_SUGGESTED,
            f"no near copy, but it looks like the same subject (similarity {max(sims):.2f} > "
            f"{semantic_threshold:.2f})" + borderline,
            evidence,
        )
    return Suggestion(
        NOVEL,
        f"no {words.image} is close: nearest tiled l2 {best_tiled.tiled_l2:.2f} > {threshold:.2f}"
        + (f", calibrated l2 {cal:.2f}" if cal is not None else "") + borderline,
        evidence,
    )
