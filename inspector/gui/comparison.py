"""The comparison panel: the selected generation large, its four nearest indexed images beside it, each with
caption, source file and url, duplicate count and the distances in plain words, and a heatmap toggle (H).

Every word about the neighbours follows the role of the index searched (inspector.roles): "training image"
for the model's training set, "reference image" / "in your collection" for a reference collection."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from inspector.gui.images import qimage_from_array, qimage_from_png, scaled_pixmap
from inspector.gui.plain import PlainLabel, escape, plain_tooltip
from inspector.gui.style import VERDICT_COLOURS, VERDICT_WORDS, role_tips
from inspector.metrics import EXTRACTION_THRESHOLD as THRESHOLD
from inspector.metrics import tiled_l2_words
from inspector.provenance import QUERY_KIND, finding_kind
from inspector.roles import describe_index, origin_words, role_of, role_words

HEATMAP_MODES = ("none", "pixel", "tiles", "ssim")
HEATMAP_WORDS = {
    "none": "training image",
    "pixel": "pixel difference (yellow = differs)",
    "tiles": "tile grid (worst tile in red)",
    "ssim": "structure differs (1 - SSIM)",
}


def heatmap_words(mode: str, role: str | None = None) -> str:
    """What the picture shows in ``mode``; "none" is the neighbour itself, named by the index's role."""
    return role_words(role).image if mode == "none" else HEATMAP_WORDS[mode]


class NeighbourCard(QFrame):
    """One indexed image (training or reference) near the generation, with its evidence."""

    SIDE = 150

    def __init__(self, rank: int, parent=None):
        super().__init__(parent)
        self.rank = rank
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(f"nearest {rank}")
        self.title.setStyleSheet("font-weight: bold")
        self.picture = QLabel()
        self.picture.setFixedSize(self.SIDE, self.SIDE)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setStyleSheet("background: #eee")
        self.caption = PlainLabel()  # a training caption: data, shown as it is
        self.caption.setWordWrap(True)
        self.role: str | None = None  # the role of the index the neighbour shown came from
        self.tiled = QLabel()
        self.tiled.setWordWrap(True)
        self.others = QLabel()
        self.others.setWordWrap(True)
        self.dups = PlainLabel()
        self._set_role_tips()
        self.source = PlainLabel()
        self.source.setWordWrap(True)
        self.source.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.source.setStyleSheet("color: #555")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(2)
        for w in (self.title, self.picture, self.caption, self.tiled, self.others, self.dups, self.source):
            lay.addWidget(w)
        lay.addStretch(1)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self._views: dict[str, object] = {}
        self._size: int | None = None  # the comparison size of the neighbour shown
        self.clear()

    def clear(self) -> None:
        self.picture.clear()
        self.picture.setText("—")
        for w in (self.caption, self.tiled, self.others, self.dups, self.source):
            w.setText("")
        self._views = {}

    def _set_role_tips(self) -> None:
        tips = role_tips(self.role)
        self.tiled.setToolTip(tips["threshold"])
        self.others.setToolTip(tips["others"])
        self.dups.setToolTip(tips["duplicates"])

    def show_neighbour(self, nb, thumbnail_png: bytes | None = None) -> None:
        self.role = getattr(nb, "index_role", None) or "training"
        words = role_words(self.role)
        self._set_role_tips()
        named = " (from the file name)" if getattr(nb, "caption_source", None) == "the file name" else ""
        self.caption.setText(f"“{nb.caption}”{named}" if nb.caption else "(no caption)")
        self.tiled.setText(f"<b>tiled l2 {nb.tiled_l2:.2f}</b>: {tiled_l2_words(nb.tiled_l2)} (threshold {THRESHOLD:.2f})")
        cal = f" · calibrated {nb.calibrated_l2:.2f}" if nb.calibrated_l2 is not None else ""
        size = f" · compared at {nb.comparison_size} px" if nb.comparison_size else ""
        self.others.setText(f"l2 {nb.l2:.3f} · SSIM {nb.ssim:.2f}{cal}{size}")
        self._size = nb.comparison_size
        self.dups.setText(words.count(nb.duplicate_count))
        origin = origin_words(getattr(nb, "url", None))
        self.source.setText(nb.source + (f"\n{origin}" if origin else ""))  # the local file, then where from
        self.source.setToolTip(plain_tooltip(nb.source + (f"\n{origin}" if origin else "")
                                             + (f"\nlicence: {nb.licence}" if nb.licence else "")))
        self.title.setText(f"nearest {self.rank}")
        self.title.setStyleSheet(
            "font-weight: bold; color: %s" % ("#c82828" if nb.tiled_l2 <= THRESHOLD else "palette(text)"))
        thumbnail_png = thumbnail_png or getattr(nb, "thumbnail_png", None)  # a casebook keeps its bytes
        if thumbnail_png:
            self.picture.setPixmap(scaled_pixmap(qimage_from_png(thumbnail_png), self.SIDE))
        elif nb.thumbnail:
            from PySide6.QtGui import QImage

            self.picture.setPixmap(scaled_pixmap(QImage(nb.thumbnail), self.SIDE))
        self._views = {}

    def set_views(self, views: dict) -> None:
        """``views``: mode -> H x W x 3 uint8 picture (the training image and its three heatmaps)."""
        self._views = views

    def show_mode(self, mode: str) -> None:
        pic = self._views.get(mode)
        if pic is not None:
            self.picture.setPixmap(scaled_pixmap(qimage_from_array(pic), self.SIDE))
            self.picture.setToolTip(heatmap_words(mode, self.role) + (
                f", computed at {self._size} x {self._size} px from the two images the distances came from"
                if self._size and mode != "none" else ""))


class ComparisonPanel(QWidget):
    """Selected generation (large) + four NeighbourCards + the heatmap legend."""

    GEN_SIDE = 224

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = "none"
        self.generation = QLabel()
        self.generation.setFixedSize(self.GEN_SIDE, self.GEN_SIDE)
        self.generation.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.generation.setStyleSheet("background: #eee")
        self.generation.setAccessibleName("Selected generation")
        self.gen_title = PlainLabel("Select a generation")
        self.gen_title.setStyleSheet("font-weight: bold")
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setMaximumWidth(self.GEN_SIDE)
        self.details = PlainLabel()  # names the model's folder
        self.details.setWordWrap(True)
        self.details.setMaximumWidth(self.GEN_SIDE)
        self.details.setStyleSheet("color: #555")
        self.searched = PlainLabel()  # the index compared with, in its role's words
        self.searched.setWordWrap(True)
        self.searched.setMaximumWidth(self.GEN_SIDE)
        self.role: str | None = None
        self.mode_label = QLabel()
        self.mode_label.setWordWrap(True)
        self.mode_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.legend = QLabel()
        self.note = PlainLabel()  # why the pictures are thumbnails, when they are
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a5a00")
        self.note.setVisible(False)
        left_box = QWidget()
        left_box.setFixedWidth(self.GEN_SIDE + 8)
        left = QVBoxLayout(left_box)
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.gen_title)
        left.addWidget(self.generation)
        left.addWidget(self.verdict)
        left.addWidget(self.details)
        left.addWidget(self.searched)
        left.addStretch(1)
        self.cards = [NeighbourCard(r + 1) for r in range(4)]
        grid = QGridLayout()
        for k, card in enumerate(self.cards):
            grid.addWidget(card, 0, k)
        head = QHBoxLayout()
        head.addWidget(self.mode_label, 1)  # the whole width: a narrow column of words pushes the cards down
        head.addWidget(self.legend)
        right = QVBoxLayout()
        right.addLayout(head)
        right.addWidget(self.note)
        right.addLayout(grid)
        lay = QHBoxLayout(self)
        lay.addWidget(left_box)
        lay.addLayout(right, 1)
        self._update_mode_label()

    def clear(self) -> None:
        self.generation.clear()
        self.set_note("")
        self.gen_title.setText("Select a generation")
        self.verdict.setText("")
        self.details.setText("")
        self.searched.setText("")
        self.searched.setToolTip("")
        for card in self.cards:
            card.clear()

    def show_generation(self, item, thumbnails: list[bytes | None] | None = None) -> None:
        self.set_note("")
        self.generation.setPixmap(scaled_pixmap(qimage_from_array(item.image), self.GEN_SIDE))
        prov = item.provenance
        query = finding_kind(prov) == QUERY_KIND  # an image a person asked about, not a generation
        self.show_title(item)
        s = item.suggestion
        colour = VERDICT_COLOURS.get(s.verdict, VERDICT_COLOURS[None]).name()
        self.verdict.setText(
            f"<span style='background:{colour}; color:white; font-weight:bold'>&nbsp;suggested: "
            f"{escape(VERDICT_WORDS.get(s.verdict, s.verdict))}&nbsp;</span><br>{escape(s.reason)}"
            + ("<br><i>The suggestion is the app's; the label is yours.</i>"))
        if query:
            self.details.setText(f"{prov.get('width', '?')}x{prov.get('height', '?')} px {prov.get('format', '')} · "
                                 f"sha256 {str(prov.get('file_sha256', ''))[:12]}… · "
                                 + ("pasted" if prov.get("origin") == "clipboard" else "dropped or opened file"))
            self.details.setToolTip("An image you asked about, not a generation. Ctrl+R records it in the casebook "
                                    "with its file name, the sha256 of its bytes, its size and the index searched.")
        model = prov.get("model") or {}
        source = model.get("source", "?") if isinstance(model, dict) else str(model)
        sha = (model.get("sha256") or "")[:12] if isinstance(model, dict) else ""
        if not query:
            self.details.setText(
                f"steps {prov.get('steps', '?')} · guidance {prov.get('guidance', '?')} · "
                f"{prov.get('width', '?')}x{prov.get('height', '?')} px · model {source}"
                + (f" (weights {sha}…)" if sha else ""))
            self.details.setToolTip("Everything needed to make this image again is stored inside its PNG and in the "
                                    "casebook: prompt, seed, steps, guidance, scheduler, model weights hash, versions.")
        index = getattr(item, "index", None)
        self.role = (index or {}).get("role") or role_of(item.neighbours)
        words = role_words(self.role)
        where = f": {index['source']} ({index['images']} images)" if index and index.get("source") else ""
        self.searched.setText(f"compared with {words.collection}{where}")
        self.searched.setToolTip(plain_tooltip(describe_index(index) if index else words.role_name))
        self._update_mode_label()
        for k, card in enumerate(self.cards):
            if k < len(item.neighbours):
                card.show_neighbour(item.neighbours[k], thumbnails[k] if thumbnails else None)
            else:
                card.clear()

    def show_title(self, item) -> None:
        """The title above the picture: 'seed 3 · finding #12', or a searched image's file name."""
        prov = item.provenance
        name = prov.get("file_name", "") if finding_kind(prov) == QUERY_KIND else f"seed {item.seed}"
        self.gen_title.setText(name + (f" · finding #{item.finding_id}" if item.finding_id else ""))

    def set_views(self, views: list[dict] | None, note: str = "") -> None:
        """The neighbours' pictures and heatmaps (None: keep the thumbnails shown), with ``note`` saying why
        there are none."""
        for card, v in zip(self.cards, views or [], strict=False):
            card.set_views(v)
        self.set_note(note)
        self.show_mode(self.mode)

    def set_note(self, note: str) -> None:
        self.note.setText(f"Note: {note}" if note else "")
        self.note.setVisible(bool(note))

    def cycle_mode(self) -> str:
        self.mode = HEATMAP_MODES[(HEATMAP_MODES.index(self.mode) + 1) % len(HEATMAP_MODES)]
        self.show_mode(self.mode)
        return self.mode

    def show_mode(self, mode: str) -> None:
        self.mode = mode
        for card in self.cards:
            card.show_mode(mode)
        self._update_mode_label()

    def _update_mode_label(self) -> None:
        self.mode_label.setText("Nearest 1-4 ordered by tiled l2 (nearest 1 is the image the suggestion is "
                                f"about). Showing: <b>{heatmap_words(self.mode, self.role)}</b> — press H to cycle "
                                "none / pixel difference / tile grid / SSIM map")
        if self.mode == "none":
            self.legend.clear()
        else:
            import numpy as np

            from inspector.heatmap import legend

            vmax = 1.0 if self.mode == "ssim" else 0.5
            pic = np.asarray(legend(90, vmax, "colour scale", width=120).convert("RGB"))
            self.legend.setPixmap(scaled_pixmap(qimage_from_array(pic), 120))
