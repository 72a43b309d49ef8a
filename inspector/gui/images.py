"""Conversions between numpy / PIL pictures and Qt images (on the UI thread: cheap, small pictures only)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap


def qimage_from_array(arr: np.ndarray) -> QImage:
    """H x W x 3 (or x 4) uint8 array to a QImage that owns its pixels."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        return QImage(arr.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    if arr.shape[2] == 4:
        return QImage(arr.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_from_png(data: bytes) -> QImage:
    image = QImage()
    image.loadFromData(data, "PNG")
    return image


def scaled_pixmap(image: QImage, side: int) -> QPixmap:
    """Scale to fit a ``side`` square; small images (the demo's 32 px) scale without blurring into mush."""
    if image.isNull():
        return QPixmap()
    mode = Qt.TransformationMode.FastTransformation if image.width() * 3 <= side else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, mode))
