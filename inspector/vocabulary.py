"""Which of a prompt's words the model can read: words its tokenizer does not know, words cut off by its limit.

A text-to-image model sees a prompt only through its tokenizer. Two kinds of words never reach it:

- **unknown words**: the tokenizer maps them to its unknown token, or spells them out from pieces the text encoder
  never learned. Real CLIP BPE is byte-level and almost never produces an unknown token; the demo model's
  tokenizer is a word vocabulary with a byte fallback, and its folder lists the words the text encoder was trained
  on (``known_words.txt``, written by ``inspector demo build``): any other word is unknown to it.
- **cut-off words**: CLIP reads at most ``model_max_length`` tokens (77 for Stable Diffusion, beginning and end
  markers included); pieces past that are dropped before the text encoder runs.

The model's images cannot depend on such words, so a verdict about the prompt says nothing about them. This module
names them, with no model loaded: :func:`load_tokenizers` reads only the tokenizer files of a model folder.
No Qt and no torch here (transformers' tokenizers only).
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: In a tokenizer folder: the words the model's text encoder was trained on, one a line ("#" starts a comment).
KNOWN_WORDS_FILE = "known_words.txt"
#: Components of a diffusers model_index.json that are tokenizers (SD 1.x/2.x: one; SDXL: two; SD3: three).
TOKENIZER_COMPONENTS = ("tokenizer", "tokenizer_2", "tokenizer_3")
#: model_max_length of a tokenizer that declares no limit (transformers' VERY_LARGE_INTEGER is 1e30).
_NO_LIMIT = 10**9
_PUNCTUATION = string.punctuation + "“”‘’«»…"


@dataclass(frozen=True)
class PromptWord:
    """One word of the prompt (a run of characters without white space) and what the tokenizer made of it.

    Attributes
    ----------
    text
        The word exactly as written, punctuation included, e.g. ``"Michetti,"``.
    start, end
        Its character span in the prompt (``prompt[start:end] == text``).
    pieces
        The tokenizer's pieces for it, e.g. ``("mic", "hetti</w>")``.
    positions
        Each piece's position in the tokenized prompt (0 is the beginning marker, when the tokenizer adds one).
    unknown
        The tokenizer does not know the word: a piece is its unknown token, or the word is not in the list of
        words the text encoder was trained on (when the tokenizer folder has one).
    truncated
        At least one piece falls past the tokenizer's limit, so the model never sees it.
    visible_pieces
        How many of its pieces the model sees (``len(pieces)`` unless truncated).
    """

    text: str
    start: int
    end: int
    pieces: tuple[str, ...]
    positions: tuple[int, ...]
    unknown: bool = False
    truncated: bool = False
    visible_pieces: int = 0

    @property
    def name(self) -> str:
        """The word without the punctuation around it (``"Michetti,"`` -> ``"Michetti"``), for messages."""
        return self.text.strip(_PUNCTUATION) or self.text


@dataclass
class VocabularyCheck:
    """What the model's tokenizer(s) make of one prompt.

    ``token_limit`` is the number of tokens the text encoder reads, markers included (77 for Stable Diffusion, 32
    for the demo); ``tokens_needed`` is how many the whole prompt takes (the longest over the tokenizers).
    """

    prompt: str
    words: list[PromptWord]
    token_limit: int | None
    tokens_needed: int

    @property
    def unknown_words(self) -> list[str]:
        """Words the tokenizer does not know, as written (punctuation around them removed), in prompt order."""
        return _distinct(w.name for w in self.words if w.unknown)

    @property
    def truncated_words(self) -> list[str]:
        """Words wholly or partly past the token limit, in prompt order (a repeated word appears each time)."""
        return [w.name for w in self.words if w.truncated]

    @property
    def cut_off_text(self) -> str:
        """The end of the prompt the model never sees (from the first word past the limit), or ``""``."""
        first = next((w for w in self.words if w.truncated), None)
        return self.prompt[first.start:].strip() if first else ""

    def notes(self) -> list[str]:
        """Plain sentences for a reviewer: which words the model cannot see, and what that means for a verdict."""
        out = []
        if self.unknown_words:
            out.append(
                f"the model's tokenizer does not know: {', '.join(self.unknown_words)} — the model cannot read "
                "these words (they become its unknown token, or pieces it never learned), so its images cannot "
                "depend on them; a NOVEL verdict says nothing about them")
        if self.truncated_words:
            tail = self.cut_off_text
            if len(tail) > 120:
                tail = tail[:80] + " … " + tail[-30:]
            first = next(w for w in self.words if w.truncated)
            partly = f" (“{first.name}” is cut in the middle)" if first.visible_pieces else ""
            out.append(
                f"the model reads only the first {self.token_limit} tokens of a prompt (this one needs "
                f"{self.tokens_needed}), so it never sees the end of the prompt: “{tail}”{partly} — its images "
                "cannot depend on those words; a verdict says nothing about them (put the words that matter first)")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: the unknown and cut-off words, the limit and the tokens the prompt needs."""
        return {
            "unknown_words": self.unknown_words,
            "truncated_words": self.truncated_words,
            "cut_off_text": self.cut_off_text,
            "token_limit": self.token_limit,
            "tokens_needed": self.tokens_needed,
        }


def _distinct(names) -> list[str]:
    return list(dict.fromkeys(names))


# --- one tokenizer ------------------------------------------------------------------------------------------------


def token_limit(tokenizer: Any) -> int | None:
    """Tokens the text encoder reads (markers included), or None when the tokenizer declares no limit."""
    limit = int(getattr(tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
    return None if limit >= _NO_LIMIT else limit


_known_lock = threading.Lock()
_call_lock = threading.Lock()
_known_cache: dict[str, frozenset[str] | None] = {}


def known_words(tokenizer: Any) -> frozenset[str] | None:
    """The words the tokenizer's model was trained on, when its folder lists them (lower case), else None."""
    folder = getattr(tokenizer, "name_or_path", "") or ""
    with _known_lock:
        if folder not in _known_cache:
            path = Path(folder) / KNOWN_WORDS_FILE if folder else None
            words = None
            if path is not None and path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines()
                words = frozenset(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))
            _known_cache[folder] = words
        return _known_cache[folder]


def _alnum_parts(text: str) -> list[str]:
    """The letter/digit runs of a word, lower case: what a word list is checked against (``"cat!"`` -> ``cat``)."""
    parts, current = [], []
    for ch in text.lower():
        if ch.isalnum():
            current.append(ch)
        elif current:
            parts.append("".join(current))
            current = []
    if current:
        parts.append("".join(current))
    return parts


def tokenizer_words(tokenizer: Any, prompt: str) -> tuple[list[PromptWord], int]:
    """The prompt's words with their pieces, as one tokenizer sees them, and the tokens the prompt needs.

    A word is a run of characters without white space; its pieces are the tokens whose character spans fall in
    it (a fast tokenizer's offsets). Special tokens (beginning / end markers) belong to no word.

    Returns
    -------
    (words, tokens_needed)
        ``tokens_needed`` counts the markers too, so it compares with :func:`token_limit`.
    """
    with _call_lock:  # a fast tokenizer changes its truncation setting per call: one call at a time
        enc = tokenizer(prompt, truncation=False, add_special_tokens=True, return_offsets_mapping=True,
                        return_special_tokens_mask=True, verbose=False)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special = list(enc["special_tokens_mask"])
    pieces = tokenizer.convert_ids_to_tokens(ids)
    limit = token_limit(tokenizer)
    lead = 0
    while lead < len(special) and special[lead]:
        lead += 1
    # The text encoder reads the first (limit - markers) content tokens; the rest are cut before it runs.
    room = None if limit is None else max(0, limit - tokenizer.num_special_tokens_to_add())
    unk = getattr(tokenizer, "unk_token_id", None)
    known = known_words(tokenizer)

    groups: list[list[int]] = []
    for pos, (start, end) in enumerate(offsets):
        if special[pos] or end <= start:
            continue
        # Pieces that touch (or share a character, as the bytes of one emoji do) belong to one word.
        if groups and start <= offsets[groups[-1][-1]][1]:
            groups[-1].append(pos)
        else:
            groups.append([pos])
    words = []
    for group in groups:
        start, end = offsets[group[0]][0], offsets[group[-1]][1]
        text = prompt[start:end]
        visible = len(group) if room is None else sum(1 for p in group if p - lead < room)
        # A cut-off comma or full stop changes nothing the model could draw: only letters and digits count.
        cut = any(any(ch.isalnum() for ch in prompt[offsets[p][0]:offsets[p][1]]) for p in group[visible:])
        is_unknown = any(ids[p] == unk for p in group) if unk is not None else False
        if known is not None and not is_unknown:
            is_unknown = any(part not in known for part in _alnum_parts(text))
        words.append(PromptWord(text=text, start=start, end=end, pieces=tuple(pieces[p] for p in group),
                                positions=tuple(group), unknown=is_unknown, truncated=cut,
                                visible_pieces=visible))
    return words, len(ids)


def check_prompt(tokenizers: Sequence[Any], prompt: str) -> VocabularyCheck:
    """Check ``prompt`` against every tokenizer of a model (SDXL has two): a word counts as unknown or cut off
    when it is so for any of them."""
    if not tokenizers:
        raise ValueError("check_prompt needs at least one tokenizer")
    merged: dict[tuple[int, int], PromptWord] = {}
    needed, limits = 0, []
    for tok in tokenizers:
        words, n = tokenizer_words(tok, prompt)
        needed = max(needed, n)
        limit = token_limit(tok)
        if limit is not None:
            limits.append(limit)
        for w in words:
            old = merged.get((w.start, w.end))
            if old is None:
                merged[(w.start, w.end)] = w
            else:
                merged[(w.start, w.end)] = PromptWord(
                    text=old.text, start=old.start, end=old.end, pieces=old.pieces, positions=old.positions,
                    unknown=old.unknown or w.unknown, truncated=old.truncated or w.truncated,
                    visible_pieces=min(old.visible_pieces, w.visible_pieces))
    words = sorted(merged.values(), key=lambda w: w.start)
    return VocabularyCheck(prompt=prompt, words=words, token_limit=min(limits) if limits else None,
                           tokens_needed=needed)


# --- a model's tokenizers -----------------------------------------------------------------------------------------


def pipeline_tokenizers(pipe: Any) -> list[Any]:
    """The tokenizers of a loaded pipeline (``tokenizer``, ``tokenizer_2``, ... that are set)."""
    return [t for t in (getattr(pipe, name, None) for name in TOKENIZER_COMPONENTS) if t is not None]


@dataclass
class _TokenizerCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[tuple[str, float], list[Any]] = field(default_factory=dict)


_cache = _TokenizerCache()


def load_tokenizers(model_source: str) -> list[Any]:
    """The tokenizers of a model, read from its folder alone (no weights, no torch): cheap enough to check a
    prompt while it is typed. ``model_source`` is anything :func:`inspector.generation.load_model` accepts.

    Raises
    ------
    inspector.generation.ModelLoadError
        When the model cannot be found, or names a tokenizer transformers does not have.
    """
    from inspector.generation.loading import ModelLoadError, config_folder

    folder = config_folder(model_source)
    index_file = folder / "model_index.json"
    key = (str(folder), index_file.stat().st_mtime)
    with _cache.lock:
        if key in _cache.entries:
            return _cache.entries[key]
    try:
        components = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{index_file} is unreadable ({exc}): pick a diffusers model folder") from None
    import transformers

    found = []
    for name in TOKENIZER_COMPONENTS:
        spec = components.get(name)
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] == "transformers" and spec[1]):
            continue
        cls = getattr(transformers, str(spec[1]), None)
        if cls is None or not str(spec[1]).endswith(("Tokenizer", "TokenizerFast")):
            raise ModelLoadError(f"{index_file}: {name} is a {spec[1]}, which transformers does not provide")
        try:
            found.append(cls.from_pretrained(folder / name, local_files_only=True))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"the tokenizer in {folder / name} cannot be read ({exc})") from None
    with _cache.lock:
        _cache.entries[key] = found
    return found


def check_model_prompt(model_source: str, prompt: str) -> VocabularyCheck | None:
    """:func:`check_prompt` with the tokenizers of ``model_source``; None when the model has no tokenizer."""
    tokenizers = load_tokenizers(model_source)
    return check_prompt(tokenizers, prompt) if tokenizers else None
