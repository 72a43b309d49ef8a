"""Is this image in the training set? What a drop or the clipboard holds, as things to search for.

The window hands the result to ``InspectorModel.open_dropped`` (files: a model, an index or a casebook is used as
that; image files are searched) or ``InspectorModel.search_images`` (a pasted picture). The search itself is
``inspector.image_query``, off the UI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, QUrl
from PySide6.QtGui import QImage

from inspector.image_query import PastedImage


def local_files(mime: QMimeData | None) -> list[str]:
    """The local files and folders a drop or a copy holds (file URLs), in order."""
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]


def png_of(image: QImage) -> bytes:
    """A picture as PNG bytes (what a pasted image is searched and recorded as)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def pasted_path(text: str) -> str | None:
    """A file path (or file:// URL) the clipboard holds as text, when it names an existing file."""
    text = text.strip().strip("'\"")
    if not text or "\n" in text:
        return None
    if text.startswith("file:"):
        text = QUrl(text).toLocalFile()
    path = Path(text).expanduser()
    return str(path) if path.is_file() else None


def clipboard_content(mime: QMimeData | None) -> tuple[list[str], PastedImage | None]:
    """What Ctrl+V can search: local files (copied in a file manager), else a picture (copied from a viewer or
    a browser), else a file path typed or copied as text. ([], None) when the clipboard holds none of them."""
    files = local_files(mime)
    if files:
        return files, None
    if mime is not None and mime.hasImage():
        image = QImage(mime.imageData())
        if not image.isNull():
            return [], PastedImage(png_of(image))
    if mime is not None and mime.hasText():
        path = pasted_path(mime.text())
        if path is not None:
            return [path], None
    return [], None
