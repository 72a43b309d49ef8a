"""The prompt strip: where every generation's nearest distance falls, the near-copy line
(:data:`inspector.metrics.EXTRACTION_THRESHOLD`), the clique, the Wen score."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from inspector.findings import MEMORIZED, NOVEL
from inspector.gui.plain import plain_tooltip
from inspector.gui.style import VERDICT_COLOURS
from inspector.metrics import EXTRACTION_THRESHOLD as THRESHOLD

MAX_SHOWN = 0.6


class DistanceStrip(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.values: list[float] = []
        self.clique: tuple[int, int, bool] | None = None  # size, n, flagged
        self.wen: float | None = None
        self.setMinimumHeight(60)  # the marks, then up to two lines of words
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._extra = ""
        self.line: str | None = None
        self.set_role(None)

    def set_role(self, role: str | None) -> None:
        """Name the neighbours in the words of the index's role ("training" or "reference")."""
        from inspector.roles import role_words

        self.explanation = (
            f"Each mark is one generation, placed by the tiled l2 to its nearest {role_words(role).image} (left = "
            f"closer). Marks left of the red {THRESHOLD:g} line are near copies. The clique counts generations "
            "that are near copies of each other (Carlini et al.: a large clique flags a memorized prompt without "
            "looking at any index). The Wen score measures how hard the prompt's words steer the model (higher = more "
            "suspicious).")
        self.set_extra_tip(self._extra)

    def set_extra_tip(self, extra: str) -> None:
        """The tooltip: the explanation, then ``extra`` (about this prompt, so it may quote its words)."""
        self._extra = extra
        self.setToolTip(plain_tooltip(self.explanation + (f"\n\n{extra}" if extra else "")))

    def set_values(self, values: list[float]) -> None:
        self.values = list(values)
        self.update()

    def set_summary(self, clique_size: int | None, n: int, flagged: bool, wen: float | None) -> None:
        self.clique = None if clique_size is None else (clique_size, n, flagged)
        self.wen = wen
        self.update()

    def set_line(self, text: str | None) -> None:
        """The words under the marks (``InspectorModel.summary_line``: near copies, the clique and why it may be
        smaller, the Wen score); None: counted from the marks here."""
        self.line = text
        self.update()

    def summary_text(self) -> str:
        if self.line is not None:
            return self.line
        near = sum(v <= THRESHOLD for v in self.values)
        parts = [f"{near} of {len(self.values)} near copies"]
        if self.clique:
            size, n, flagged = self.clique
            parts.append(f"largest near-identical clique {size}/{n}" + (" — FLAGGED" if flagged else ""))
        if self.wen is not None:
            parts.append(f"Wen score {self.wen:.2f}")
        return " · ".join(parts)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        left, right = 8, w - 8
        axis_y = 18
        p.setPen(QPen(self.palette().text().color(), 1))
        p.drawLine(left, axis_y, right, axis_y)

        def x_of(v: float) -> float:
            return left + (right - left) * min(v, MAX_SHOWN) / MAX_SHOWN

        tx = x_of(THRESHOLD)
        p.setPen(QPen(QColor(200, 40, 40), 2))
        p.drawLine(QPointF(tx, 4), QPointF(tx, axis_y + 8))
        p.drawText(QRectF(tx + 3, 0, 120, 14), Qt.AlignmentFlag.AlignLeft, f"{THRESHOLD:g} near copy")
        for v in self.values:
            colour = VERDICT_COLOURS[MEMORIZED if v <= THRESHOLD else NOVEL]
            p.setPen(QPen(colour, 2))
            x = x_of(v)
            p.drawLine(QPointF(x, axis_y - 6), QPointF(x, axis_y + 6))
        p.setPen(self.palette().text().color())
        p.drawText(QRectF(left, axis_y + 8, right - left, h - axis_y - 8),
                   int(Qt.AlignmentFlag.AlignLeft) | int(Qt.TextFlag.TextWordWrap),
                   self.summary_text() + f"   (axis: nearest tiled l2, 0 to {MAX_SHOWN})")
        p.end()
