"""What a prompt's words say before any image is compared: words the model cannot read, words in no caption of
the index, and the captions in the index that best match the prompt. One job: put those facts in plain words.

The facts come from :mod:`inspector.vocabulary` (the model's tokenizers) and the index's caption search
(:meth:`inspector.training_index.TrainingIndex.match_captions`). A prompt equal to a caption of the model's
training set is the strongest memorization cue there is: Carlini et al. extracted training images by prompting
with their captions. Wording stays neutral about what the index holds ("captions in the index"), and a reference
collection is never called the model's training data. No Qt, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inspector.vocabulary import VocabularyCheck, check_prompt

#: Captions shown per prompt.
CAPTION_MATCHES = 3


@dataclass
class PromptWords:
    """The word-level facts about one prompt.

    Attributes
    ----------
    vocabulary
        What the model's tokenizer(s) make of it; None when no tokenizer was available.
    words_in_no_caption
        Prompt words that occur in no caption of the index (empty when the index has no captions).
    caption_matches
        The captions that best match the prompt, best first (``captions.CaptionMatch``).
    index_role
        "training" or "reference" (what the index holds), None when no index was consulted.
    caption_note
        Why caption answers are limited for this index (built before caption search), or None.
    """

    vocabulary: VocabularyCheck | None = None
    words_in_no_caption: list[str] = field(default_factory=list)
    caption_matches: list[Any] = field(default_factory=list)
    index_role: str | None = None
    index_has_captions: bool = False
    caption_note: str | None = None

    @property
    def exact_caption(self) -> Any | None:
        """The caption the prompt equals, word for word, or None."""
        return next((m for m in self.caption_matches if m.exact), None)

    def notes(self) -> list[str]:
        """Plain sentences for a reviewer, most important first."""
        out = list(self.vocabulary.notes()) if self.vocabulary is not None else []
        exact = self.exact_caption
        if exact is not None:
            text = f"the prompt equals a caption in the index: “{exact.caption}” ({_images(exact)})"
            if self.index_role == "reference":
                text += (" — the index is a reference collection, not the model's training data, so this alone is "
                         "no memorization cue: compare the images")
            else:
                text += (" — if the index is the model's training set, that is the strongest memorization cue "
                         "(Carlini et al. extracted training images by prompting with their captions)")
            out.append(text)
        elif self.caption_matches:
            shown = "; ".join(f"“{m.caption}” ({_images(m)}, shares: {', '.join(m.shared)})"
                              for m in self.caption_matches)
            out.append(f"captions in the index closest to the prompt: {shown} — none equals the prompt (a prompt "
                       "equal to a training caption would be the strongest memorization cue)")
        if self.words_in_no_caption:
            out.append(f"no caption in the index contains: {', '.join(self.words_in_no_caption)}")
        if self.caption_note:
            out.append(self.caption_note)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: the structured facts behind :meth:`notes`."""
        vocab = self.vocabulary.as_dict() if self.vocabulary is not None else {
            "unknown_words": [], "truncated_words": [], "cut_off_text": "", "token_limit": None,
            "tokens_needed": None}
        return {
            **vocab,
            "words_in_no_caption": list(self.words_in_no_caption),
            "caption_matches": [m.as_dict() for m in self.caption_matches],
            "prompt_equals_caption": self.exact_caption is not None,
        }


def _images(match: Any) -> str:
    text = f"{match.images} image{'s' if match.images != 1 else ''}"
    if match.unique_images != match.images:
        text += f", {match.unique_images} distinct"
    return text


def check_words(tokenizers: Sequence[Any], index: Any | None, prompt: str, k: int = CAPTION_MATCHES) -> PromptWords:
    """The word-level facts about ``prompt`` for a model's ``tokenizers`` (may be empty) and an open
    :class:`~inspector.training_index.TrainingIndex` (or None)."""
    out = PromptWords(vocabulary=check_prompt(tokenizers, prompt) if tokenizers else None)
    if index is None:
        return out
    out.index_role = getattr(index, "role", None) or "training"
    if index.caption_count() == 0:
        return out
    out.index_has_captions = True
    out.caption_matches = index.match_captions(prompt, k)
    if out.vocabulary is not None:
        words = [w.name for w in out.vocabulary.words]
    else:
        words = prompt.split()
    out.words_in_no_caption = list(dict.fromkeys(index.caption_vocabulary_missing(words)))
    out.caption_note = index.caption_search_note()
    return out


def steering_words(wen_words: Sequence[tuple[str, float]] | None, unknown: Sequence[str] = (), top: int = 5) -> str:
    """The words that steer the model hardest (Wen et al.'s per-word attribution), strongest first, e.g.
    ``"coffee 0.41, Rachel 0.30 (unknown to the model)"``; ``""`` when there are none. A word the tokenizer does
    not know is marked as such: its score comes from pieces the model never learned, not from its meaning."""
    if not wen_words:
        return ""
    unknown_set = set(unknown)
    ranked = sorted(wen_words, key=lambda t: -t[1])[:top]
    return ", ".join(f"{w} {s:.2g}" + (" (unknown to the model)" if w in unknown_set else "") for w, s in ranked)
