"""Colours and words for verdicts and labels. Colour is never the only signal: every badge carries its word."""

from __future__ import annotations

from PySide6.QtGui import QColor

from inspector.findings import LIKENESS_ONLY, LIKENESS_SUGGESTED, MEMORIZED, NOVEL, UNLABELED

VERDICT_COLOURS = {
    MEMORIZED: QColor(200, 40, 40),
    LIKENESS_SUGGESTED: QColor(214, 140, 0),
    LIKENESS_ONLY: QColor(214, 140, 0),
    NOVEL: QColor(40, 130, 60),
    UNLABELED: QColor(110, 110, 110),
    None: QColor(110, 110, 110),
}
VERDICT_WORDS = {
    MEMORIZED: "MEMORIZED",
    LIKENESS_SUGGESTED: "LIKENESS?",
    LIKENESS_ONLY: "LIKENESS",
    NOVEL: "NOVEL",
    None: "…",
}

THRESHOLD_TIP = (
    "Tiled l2 (Carlini et al. 2023): the image is cut into a 4 x 4 grid and the pixel distance of the worst tile "
    "is taken. 0 means identical; at or below {t:.2f} the generation is a near copy of that {image}."
)
L2_TIP = "l2: the average pixel difference over the whole image (root mean square, 0 = identical, 1 = opposite)."
SSIM_TIP = "SSIM: structural similarity (1 = the same structure, 0 = unrelated). Less sensitive to colour shifts."
CAL_TIP = (
    "Calibrated l2: the distance to this image divided by half the average distance to the 50 nearest {images}. "
    "Below 1 means this image is far closer than the crowd: a sign of copying rather than a common look."
)
DUP_TIP = "How many times these exact bytes occur in the training set. Heavily duplicated images are the ones " \
          "models memorize (Carlini et al. 2023)."
DUP_TIP_REFERENCE = "How many times these exact bytes occur in your reference collection (copies of one file)."


def role_tips(role: str | None) -> dict[str, str]:
    """The tooltips of a neighbour card in the words of the index's role ("training" or "reference"):
    keys threshold (with the 0.15 line filled in), others (l2, SSIM, calibrated l2) and duplicates."""
    from inspector.metrics import EXTRACTION_THRESHOLD
    from inspector.roles import REFERENCE, role_words

    words = role_words(role)
    return {
        "threshold": THRESHOLD_TIP.format(t=EXTRACTION_THRESHOLD, image=words.image),
        "others": "\n\n".join([L2_TIP, SSIM_TIP, CAL_TIP.format(images=words.images)]),
        "duplicates": DUP_TIP_REFERENCE if words.role == REFERENCE else DUP_TIP,
    }
