"""Memorization Inspector: does an image-generation model copy its training images?"""

__version__ = "0.1.0"
