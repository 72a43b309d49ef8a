"""The captions in an index, searchable: which caption best matches a prompt, which prompt words no caption has.

Carlini et al. extracted training images by prompting the model with their training captions, so a prompt equal
to a caption in the index (when the index is the model's training set) is the strongest memorization cue there is.

When a build finishes, :func:`write_caption_tables` stores every distinct caption once, with how many files and
distinct images carry it, and an SQLite FTS5 full-text index over them (schema version 2). Indexes built before
that have no such tables: :class:`CaptionSearch` then scans the distinct captions of the ``sources`` table
instead (fine for small indexes; above :data:`MAX_SCAN_CAPTIONS` it gives up and says how to add the tables).
Prompts and captions are compared as words: letters and digits, lower case, accents removed (FTS5's
``unicode61 remove_diacritics 2`` tokenizer, mirrored by :func:`caption_words`).
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inspector.training_index.store import SCHEMA_VERSION

#: Distinct captions, one row each, with how many files (``images``) and distinct images carry it.
CAPTIONS_TABLE = "caption_counts"
#: FTS5 index over caption_counts.caption.
SEARCH_TABLE = "caption_search"
#: fts5vocab view of SEARCH_TABLE: document frequency per word.
TERMS_TABLE = "caption_terms"
#: An index without the tables is scanned only up to this many distinct captions.
MAX_SCAN_CAPTIONS = 200_000
#: Candidates taken from the full-text index before they are scored.
CANDIDATES = 200
#: In an index of more than COMMON_FROM captions, a word in more than COMMON_FRACTION of them is too common to
#: find candidates with (it would make the full-text query sort most of the index); it still counts in the score.
COMMON_FRACTION = 0.2
COMMON_FROM = 10_000

_WORD = re.compile(r"[^\W_]+")

_SCHEMA = f"""
DROP TABLE IF EXISTS {TERMS_TABLE};
DROP TABLE IF EXISTS {SEARCH_TABLE};
DROP TABLE IF EXISTS {CAPTIONS_TABLE};
CREATE TABLE {CAPTIONS_TABLE} (
    id INTEGER PRIMARY KEY,
    caption TEXT NOT NULL UNIQUE,
    images INTEGER NOT NULL,         -- files (sources) with this caption, exact duplicates included
    unique_images INTEGER NOT NULL   -- distinct images (by sha256) among them
);
CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(
    caption, content='{CAPTIONS_TABLE}', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE {TERMS_TABLE} USING fts5vocab({SEARCH_TABLE}, 'row');
"""


def caption_words(text: str) -> list[str]:
    """The words of a prompt or caption as the caption search compares them: letter/digit runs, lower case,
    accents removed (``"Café au lait!"`` -> ``["cafe", "au", "lait"]``)."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return _WORD.findall(folded)


def write_caption_tables(conn: sqlite3.Connection) -> int:
    """(Re)write the caption tables from the ``sources`` table in one transaction; returns the distinct captions.

    Called when a build finishes, so a resumed build of an older index gains them too.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            f"INSERT INTO {CAPTIONS_TABLE}(caption, images, unique_images) SELECT caption, COUNT(*), "
            "COUNT(DISTINCT item_id) FROM sources WHERE caption != '' GROUP BY caption ORDER BY caption")
        conn.execute(f"INSERT INTO {SEARCH_TABLE}(rowid, caption) SELECT id, caption FROM {CAPTIONS_TABLE}")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(conn.execute(f"SELECT COUNT(*) FROM {CAPTIONS_TABLE}").fetchone()[0])


@dataclass(frozen=True)
class CaptionMatch:
    """A caption in the index and how well it matches a prompt.

    Attributes
    ----------
    caption
        The caption as stored.
    images
        Files in the index carrying it (exact duplicates included); ``unique_images`` counts distinct images.
    exact
        The caption equals the prompt, word for word (case, punctuation and accents aside).
    coverage
        Share of the prompt's words the caption has, each word weighted by its rarity among the captions
        (inverse document frequency), in [0, 1]; 1.0 for an exact match.
    shared
        The prompt words the caption has.
    """

    caption: str
    images: int
    unique_images: int
    exact: bool
    coverage: float
    shared: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "images": self.images, "unique_images": self.unique_images,
                "exact": self.exact, "coverage": round(self.coverage, 4), "shared_words": list(self.shared)}


@dataclass
class CaptionSearch:
    """Caption queries on an open index database (read-only is enough). Thread-safe through ``lock``."""

    conn: sqlite3.Connection
    lock: Any = field(default_factory=threading.RLock)
    _has_tables: bool | None = None
    _scanned: dict[str, tuple[int, int]] | None = None  # old indexes: caption -> (images, unique images)
    _scan_problem: str | None = None

    # --- what the index offers -------------------------------------------------------------------------------------

    @property
    def has_tables(self) -> bool:
        """The index has the caption tables (built by this version); otherwise queries scan the captions."""
        if self._has_tables is None:
            with self.lock:
                names = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
            self._has_tables = {CAPTIONS_TABLE, SEARCH_TABLE, TERMS_TABLE} <= names
        return self._has_tables

    def caption_count(self) -> int:
        """Distinct non-empty captions in the index (0: it has no captions)."""
        if self.has_tables:
            with self.lock:
                return int(self.conn.execute(f"SELECT COUNT(*) FROM {CAPTIONS_TABLE}").fetchone()[0])
        return len(self._scanned) if self._scanned is not None else self._distinct_count()

    def note(self) -> str | None:
        """Why caption answers are slower or missing for this index, or None."""
        if self.has_tables:
            return None
        self._scan()
        if self._scan_problem:
            return self._scan_problem
        return ("this index was built before caption search existed: its captions were scanned one by one; "
                "`inspector index build SRC --out DIR --resume` adds the caption index")

    def _distinct_count(self) -> int:
        with self.lock:
            return int(self.conn.execute(
                "SELECT COUNT(*) FROM (SELECT DISTINCT caption FROM sources WHERE caption != '')").fetchone()[0])

    def _scan(self) -> dict[str, tuple[int, int]] | None:
        if self._scanned is None and self._scan_problem is None:
            n = self._distinct_count()
            if n > MAX_SCAN_CAPTIONS:
                self._scan_problem = (
                    f"this index was built before caption search existed and holds {n:,} distinct captions, too "
                    "many to scan per prompt: `inspector index build SRC --out DIR --resume` adds the caption index")
                return None
            with self.lock:
                rows = self.conn.execute(
                    "SELECT caption, COUNT(*), COUNT(DISTINCT item_id) FROM sources WHERE caption != '' "
                    "GROUP BY caption").fetchall()
            self._scanned = {c: (int(a), int(b)) for c, a, b in rows}
        return self._scanned

    # --- word frequencies ------------------------------------------------------------------------------------------

    def document_frequency(self, words: Sequence[str]) -> dict[str, int]:
        """How many distinct captions contain each word (``caption_words`` form), 0 when none does."""
        words = list(dict.fromkeys(words))
        if self.has_tables:
            out = {}
            with self.lock:
                for w in words:
                    row = self.conn.execute(f"SELECT doc FROM {TERMS_TABLE} WHERE term = ?", (w,)).fetchone()
                    out[w] = int(row[0]) if row else 0
            return out
        scanned = self._scan()
        if scanned is None:
            return {}
        counts: Counter[str] = Counter()
        wanted = set(words)
        for caption in scanned:
            counts.update(wanted.intersection(caption_words(caption)))
        return {w: counts.get(w, 0) for w in words}

    def missing_words(self, words: Sequence[str]) -> list[str]:
        """Those of ``words`` that occur in no caption, in order (compared in :func:`caption_words` form)."""
        forms = {w: caption_words(w) for w in words}
        df = self.document_frequency([f for parts in forms.values() for f in parts])
        if not df:
            return []
        return [w for w, parts in forms.items() if parts and any(df.get(p, 0) == 0 for p in parts)]

    # --- best matches ----------------------------------------------------------------------------------------------

    def match(self, prompt: str, k: int = 3) -> list[CaptionMatch]:
        """The ``k`` captions that best match ``prompt``: an exact match first, then by rarity-weighted coverage of
        the prompt's words (ties: fewer extra words, then more images). Captions sharing no word are left out."""
        words = caption_words(prompt)
        if not words or k < 1:
            return []
        total = self.caption_count()
        if total == 0:
            return []
        df = self.document_frequency(words)
        if not df:
            return []
        candidates = self._candidates(words, df, total)
        idf = {w: math.log(1 + total / max(1, df.get(w, 0))) for w in set(words)}
        wanted = set(words)
        weight = sum(idf.values())
        scored = []
        for caption, (images, unique) in candidates.items():
            cw = caption_words(caption)
            shared = wanted.intersection(cw)
            if not shared:
                continue
            exact = cw == words
            coverage = 1.0 if exact else sum(idf[w] for w in shared) / weight
            scored.append((not exact, -coverage, len(set(cw) - wanted), -images, caption,
                           CaptionMatch(caption, images, unique, exact, coverage,
                                        tuple(w for w in dict.fromkeys(words) if w in shared))))
        scored.sort(key=lambda t: t[:5])
        return [t[5] for t in scored[:k]]

    def _candidates(self, words: list[str], df: dict[str, int], total: int) -> dict[str, tuple[int, int]]:
        if not self.has_tables:
            return self._scan() or {}
        present = [w for w in dict.fromkeys(words) if df.get(w, 0) > 0]
        if not present:
            return {}
        rare = [w for w in present if total <= COMMON_FROM or df[w] <= COMMON_FRACTION * total] or present
        quoted = [f'"{w}"' for w in rare]
        phrase = '"' + " ".join(words) + '"'
        out: dict[str, tuple[int, int]] = {}
        with self.lock:
            for query, limit in ((phrase, 50), (" OR ".join(quoted), CANDIDATES)):
                rows = self.conn.execute(
                    f"SELECT c.caption, c.images, c.unique_images FROM {SEARCH_TABLE} s JOIN {CAPTIONS_TABLE} c "
                    f"ON c.id = s.rowid WHERE {SEARCH_TABLE} MATCH ? ORDER BY bm25({SEARCH_TABLE}) LIMIT ?",
                    (query, limit)).fetchall()
                out.update({c: (int(a), int(b)) for c, a, b in rows})
        return out
