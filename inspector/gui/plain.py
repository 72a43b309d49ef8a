"""Text from people and data sets shown as text, never as markup.

Prompts, captions, notes, file names, sources and reasons can hold anything, including ``<h1>``, ``<font>`` or
``<img src="/a/local/file">``. Qt guesses rich text wherever a widget is left on ``Qt.AutoText`` (labels,
message boxes) and for every tooltip, so such a string would render as markup and could fake the verdict
display. Every widget in ``inspector.gui`` that shows such a string goes through this module:

- :class:`PlainLabel` for labels (``Qt.PlainText``, set once, whatever text comes later);
- :func:`plain_tooltip` for tooltips, including item models' ``ToolTipRole`` (tooltips have no text-format
  switch, so the text is escaped and wrapped as rich text that shows exactly the characters given);
- :func:`escape` for the few labels that compose their own markup around a data string;
- :func:`ask` / :func:`tell` / :func:`inform` for message boxes.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget


class PlainLabel(QLabel):
    """A QLabel that always shows its text literally (``Qt.PlainText``)."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)


def escape(text: object) -> str:
    """``text`` for inclusion in Qt rich text: ``<``, ``>``, ``&`` and quotes escaped, so it shows literally."""
    return html.escape(str(text), quote=True)


def plain_tooltip(text: object) -> str:
    """A tooltip that shows ``text`` exactly (line breaks and spaces kept, long lines wrapped), never as markup.

    An empty text gives "" (no tooltip).
    """
    text = str(text)
    if not text:
        return ""
    return f"<p style='white-space:pre-wrap'>{escape(text)}</p>"


def _box(parent: QWidget | None, icon: QMessageBox.Icon, title: str, text: str) -> QMessageBox:
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.NoButton, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)  # the text names files the person chose
    return box


def ask(parent: QWidget | None, title: str, text: str, yes: str = "Yes") -> bool:
    """A yes / no question shown as plain text; the safe answer (No) is the default. True for yes."""
    box = _box(parent, QMessageBox.Icon.Question, title, text)
    yes_button = box.addButton(yes, QMessageBox.ButtonRole.YesRole)
    no_button = box.addButton(QMessageBox.StandardButton.No)
    box.setDefaultButton(no_button)
    box.setEscapeButton(no_button)
    box.exec()
    return box.clickedButton() is yes_button


def tell(parent: QWidget | None, title: str, text: str) -> None:
    """A warning with one OK button, shown as plain text."""
    box = _box(parent, QMessageBox.Icon.Warning, title, text)
    box.addButton(QMessageBox.StandardButton.Ok)
    box.exec()


def inform(parent: QWidget | None, title: str, text: str) -> QMessageBox:
    """An information box with one OK button, shown as plain text and without blocking (``open``): returns the
    box, which closes itself when OK is pressed."""
    box = _box(parent, QMessageBox.Icon.Information, title, text)
    box.addButton(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
