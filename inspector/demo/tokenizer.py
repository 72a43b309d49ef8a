"""A CLIP tokenizer over the demo vocabulary, built from the captions alone (no download).

CLIP's tokenizer is byte-level BPE with an end-of-word marker. We give it every single byte (so any text
tokenizes) plus merges that build each demo word left to right. A word outside the captions is therefore spelled
out from byte pieces the text encoder never sees in training: to the model it is unknown, although no unknown
token appears. ``known_words.txt`` beside the tokenizer lists the caption words, so that
:mod:`inspector.vocabulary` can say which words of a prompt the model cannot read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import CLIPTokenizer

MAX_LENGTH = 32
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """Vocabulary and merge rules for a CLIP byte-level BPE that knows ``words`` as whole tokens."""
    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[str] = []
    seen = set()
    for word in sorted(set(words)):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for nxt in pieces[1:]:
            rule = f"{current} {nxt}"
            current = current + nxt
            if rule not in seen:
                seen.add(rule)
                merges.append(rule)
            vocab.setdefault(current, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def caption_words(captions: list[str]) -> list[str]:
    return sorted({w for c in captions for w in re.findall(r"[a-z0-9]+", c.lower())})


def write_known_words(folder: Path, captions: list[str]) -> Path:
    """Write ``known_words.txt`` (the words the text encoder is trained on) into a tokenizer folder."""
    from inspector.vocabulary import KNOWN_WORDS_FILE

    path = Path(folder) / KNOWN_WORDS_FILE
    header = ("# The words the demo text encoder was trained on (its training captions), one a line.\n"
              "# The tokenizer spells any other word out from byte pieces the model never learned.\n")
    path.write_text(header + "\n".join(caption_words(captions)) + "\n", encoding="utf-8")
    return path


def save_tokenizer(folder: Path, captions: list[str]) -> CLIPTokenizer:
    """Write vocab.json, merges.txt, the tokenizer config and known_words.txt into ``folder``; return the loaded
    tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_known_words(folder, captions)
    vocab, merges = build_vocab(caption_words(captions))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=1),
        encoding="utf-8",
    )
    return CLIPTokenizer.from_pretrained(folder)
