"""Render the application icon's PNG sizes from its SVG source, reproducibly.

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py

Writes ``resources/icons/hicolor/<N>x<N>/apps/memorization-inspector.png`` for every size in ``SIZES`` (the
freedesktop icon theme layout, so the folder can be copied into ``~/.local/share/icons/`` as it is). The SVG
itself, ``resources/icons/memorization-inspector.svg``, is the window icon and the scalable desktop icon.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"
NAME = "memorization-inspector"
SOURCE = ICONS / f"{NAME}.svg"
#: The sizes desktops ask for (freedesktop hicolor theme, Windows and macOS icon sets).
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def png_path(size: int, icons: Path = ICONS) -> Path:
    """Where the ``size`` x ``size`` PNG lives in the hicolor layout."""
    return icons / "hicolor" / f"{size}x{size}" / "apps" / f"{NAME}.png"


def render(source: Path = SOURCE, icons: Path = ICONS, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    """Render ``source`` at each size onto a transparent canvas; return the written paths."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    # QPainter on a QImage needs an application object (offscreen is enough)
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841
    renderer = QSvgRenderer(str(source))
    if not renderer.isValid():
        raise SystemExit(f"render_icons: {source} is not a valid SVG")
    written = []
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        out = png_path(size, icons)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out), "PNG"):
            raise SystemExit(f"render_icons: could not write {out}")
        written.append(out)
    return written


if __name__ == "__main__":
    for path in render():
        print(path.relative_to(ROOT))
