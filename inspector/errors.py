"""Exceptions that carry a plain-words message for the person at the keyboard."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or usage: the command line exits 2 and prints only this message."""
