"""Colours and words for verdicts and labels. Colour is never the only signal: every badge carries its word."""

from __future__ import annotations

from PySide6.QtGui import QColor

VERDICT_COLOURS = {
    "memorized": QColor(200, 40, 40),
    "likeness?": QColor(214, 140, 0),
    "likeness-only": QColor(214, 140, 0),
    "novel": QColor(40, 130, 60),
    "unlabeled": QColor(110, 110, 110),
    None: QColor(110, 110, 110),
}
VERDICT_WORDS = {
    "memorized": "MEMORIZED",
    "likeness?": "LIKENESS?",
    "likeness-only": "LIKENESS",
    "novel": "NOVEL",
    None: "…",
}
LABEL_WORDS = {"memorized": "Memorized", "likeness-only": "Likeness only", "novel": "Novel", "unlabeled": "Unlabeled"}

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
