"""Read the prompt files research teams use: plain text, CSV/TSV, JSON Lines, JSON and parquet.

The format is chosen by the file's extension and confirmed by its content:

- ``.txt`` (also ``.text``, ``.lst``, ``.prompts``): one prompt a line. A ``.txt`` whose first non-blank line is
  a JSON object is read as JSON Lines, and one that parses as a whole JSON array or object is read as JSON: a
  prompt that is literally a JSON object is far less likely than a JSON file saved under the wrong name.
- ``.csv`` / ``.tsv`` (also ``.tab``): a header line, then one row per prompt. The column is ``--column NAME``,
  else the first of :data:`PROMPT_KEYS` present (names matched exactly, case as given). A ``.csv`` whose header
  holds tabs and no commas is read as TSV, and the other way round.
- ``.jsonl`` (also ``.ndjson``): each line a JSON object holding one of the keys (or the ``--column`` key), or a
  JSON string. The JSON Lines list of memorized Stable Diffusion prompts of Wen et al. 2024 (keys ``caption``,
  ``index``, ``url``) reads as its captions. A ``.jsonl`` that is really one JSON document is read as JSON.
- ``.json``: an array of strings or of such objects; or an object holding such arrays: under ``"prompts"`` when
  that key exists, else every array value in order (so the demo's ``{"memorized": [...], "novel": [...]}`` reads
  as its prompts; values that are not arrays, such as a title, are ignored); or one object with a prompt key. A
  ``.json`` that is really JSON Lines is read as JSON Lines.
- ``.parquet`` (also ``.pq``): LAION metadata (``TEXT``) or img2dataset output (``caption``), read with pyarrow,
  one column only, in batches. A file that starts with parquet's ``PAR1`` magic is read as parquet whatever
  its name.
- Any other extension (or none): JSON, JSON Lines or parquet when the content says so unambiguously; otherwise
  the file is refused, since plain text and CSV cannot be told apart.

Every prompt is then cleaned the way CLIP's own tokenizer cleans text (``html.unescape`` twice, whitespace runs
collapsed to one space, ends stripped), so ``Tom &amp; Jerry`` from a LAION caption is the prompt ``Tom & Jerry``
the text encoder would see; HTML tags such as ``<i>`` are kept as written. Empty and missing values are skipped,
and a prompt that occurs twice is kept once, at its first place. Long prompts are kept whole (the tokenizer
truncates what the model sees; the casebook records the whole text).

Every refusal is a :class:`~inspector.errors.UserError` with one line saying what is wrong and what to do.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import UserError

#: Keys (JSON) and columns (CSV, TSV, parquet) that hold the prompt, in order of preference, matched exactly.
PROMPT_KEYS = ("prompt", "caption", "text", "TEXT")

TEXT, CSV, TSV, JSONL, JSON, PARQUET = "plain text", "CSV", "TSV", "JSON Lines", "JSON", "parquet"
_BY_EXTENSION = {
    ".txt": TEXT, ".text": TEXT, ".lst": TEXT, ".prompts": TEXT,
    ".csv": CSV, ".tsv": TSV, ".tab": TSV,
    ".jsonl": JSONL, ".ndjson": JSONL,
    ".json": JSON,
    ".parquet": PARQUET, ".pq": PARQUET,
}
_KNOWN = ".txt (one prompt a line), .csv or .tsv (with a header), .jsonl, .json or .parquet"
_KEYS = ", ".join(PROMPT_KEYS)
_PARQUET_MAGIC = b"PAR1"


@dataclass
class PromptFile:
    """The distinct prompts of a file, and how the file was read (for the line the CLI prints)."""

    path: Path
    format: str  # one of TEXT, CSV, TSV, JSONL, JSON, PARQUET
    prompts: list[str]
    column: str | None = None  # the key or column read (None for plain text and arrays of strings)
    records: int = 0  # values read before cleaning and de-duplication (blank ones included)

    def describe(self) -> str:
        """E.g. ``500 prompts from wen.jsonl (JSON Lines, key "caption")``."""
        where = f", {'column' if self.format in (CSV, TSV, PARQUET) else 'key'} {self.column!r}" if self.column \
            else ""
        repeats = self.records - len(self.prompts)
        extra = f"; {repeats} blank or repeated skipped" if repeats > 0 else ""
        return f"{len(self.prompts)} prompts from {self.path.name} ({self.format}{where}{extra})"


def read_prompts(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """The distinct prompts of a prompt file, in order (see the module docstring for the formats).

    Parameters
    ----------
    path
        The prompt file.
    column
        The CSV/TSV/parquet column or JSON key holding the prompts; ``None``: the first of :data:`PROMPT_KEYS`.

    Raises
    ------
    UserError
        When the file is missing, its format cannot be told, it cannot be parsed, it has no usable column or
        key, or it holds no prompts.
    """
    return load_prompt_file(path, column).prompts


def load_prompt_file(path: str | os.PathLike, column: str | None = None) -> PromptFile:
    """Like :func:`read_prompts`, with the format and column that were used."""
    p = Path(path)
    fmt, text = _format_of(path)
    if fmt == PARQUET:
        return _finish(p, PARQUET, *_parquet_values(p, column))
    if column is not None and fmt == TEXT:
        raise UserError(f"--column applies to CSV, TSV, JSON, JSON Lines and parquet files; {path} is plain "
                        "text (one prompt a line): leave --column out")
    if fmt == TEXT:
        return _finish(p, TEXT, text.splitlines(), None)
    if fmt in (CSV, TSV):
        return _finish(p, fmt, *_table_values(p, text, "," if fmt == CSV else "\t", column))
    if fmt == JSONL:
        return _finish(p, JSONL, *_jsonl_values(p, text, column))
    return _finish(p, JSON, *_json_values(p, text, column))


def prompt_columns(path: str | os.PathLike) -> tuple[str, list[str], str | None]:
    """What a person chooses from before a prompt file is read whole: its format, the columns (CSV, TSV, parquet
    text columns) or keys (JSON and JSON Lines objects: of the first one) a prompt can be read from, and the one
    read by default (the first of :data:`PROMPT_KEYS` present; None when there is none to choose, as for plain
    text). Reads the header, the schema or the first record only, except for a JSON document (read whole).

    Raises
    ------
    UserError
        As :func:`load_prompt_file` does for a file whose format cannot be told.
    """
    p = Path(path)
    fmt, text = _format_of(path)
    names: list[str] = []
    if fmt == PARQUET:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(p).schema_arrow
        except (ImportError, OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable parquet file: {exc}") from None
        names = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    elif fmt in (CSV, TSV):
        first = next((line for line in text.splitlines() if line.strip()), "")
        names = [cell.strip() for cell in next(csv.reader([first], delimiter="," if fmt == CSV else "\t"), [])]
    elif fmt in (JSON, JSONL):
        record: Any = None
        if fmt == JSONL:
            line = next((line for line in text.splitlines() if line.strip()), "")
            record = _whole_json(line)
        else:
            document = _whole_json(text)
            arrays = [document] if isinstance(document, list) else (
                [v for v in document.values() if isinstance(v, list)] if isinstance(document, dict) else [])
            record = next((r for a in arrays for r in a if isinstance(r, dict)), document
                          if isinstance(document, dict) else None)
        if isinstance(record, dict):
            names = [str(k) for k, v in record.items() if isinstance(v, str)]
    return fmt, names, next((k for k in PROMPT_KEYS if k in names), names[0] if names else None)


def _format_of(path: str | os.PathLike) -> tuple[str, str]:
    """The format of a prompt file (by extension, confirmed by content) and its text ("" for parquet)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"prompt file not found: {path}")
    try:
        with p.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    ext = p.suffix.lower()
    claimed = _BY_EXTENSION.get(ext)
    if head.startswith(_PARQUET_MAGIC):
        return PARQUET, ""
    if claimed == PARQUET:
        raise UserError(f"{path} is not a parquet file (it does not start with parquet's PAR1 marker): "
                        "check the file, or give it the extension of what it holds")
    if b"\x00" in head:
        raise UserError(f"{path} holds binary data, not prompts: expected {_KNOWN}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save it as UTF-8 ({_KNOWN})") from None
    if not text.strip():
        raise UserError(f"{path} has no prompts: the file is empty")
    return _confirm(p, claimed, text), text


# --------------------------------------------------------------------------------------- telling the format


def _confirm(path: Path, claimed: str | None, text: str) -> str:
    """The format ``text`` is in, given the one its extension claims (``None``: unknown extension)."""
    if claimed in (JSON, JSONL):
        if claimed == JSON and _whole_json(text) is None and _first_line_object(text):
            return JSONL  # a .json file written as JSON Lines
        if claimed == JSONL and _first_line_object(text) is False and _whole_json(text) is not None:
            return JSON  # a .jsonl file holding one (pretty-printed) JSON document
        return claimed
    if claimed == TEXT:
        if _first_line_object(text):
            return JSONL
        stripped = text.lstrip()
        if stripped[:1] in "[{" and isinstance(_whole_json(text), (list, dict)):
            return JSON
        return TEXT
    if claimed in (CSV, TSV):
        header = text.lstrip().split("\n", 1)[0]
        if claimed == CSV and "\t" in header and "," not in header:
            return TSV
        if claimed == TSV and "," in header and "\t" not in header:
            return CSV
        return claimed
    # Unknown extension: only formats the content proves.
    if isinstance(_whole_json(text), (list, dict)):
        return JSON
    if _first_line_object(text):
        return JSONL
    raise UserError(f"cannot tell the format of {path}: give it one of the extensions {_KNOWN}")


def _whole_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _first_line_object(text: str) -> bool:
    """Whether the first non-blank line is, by itself, a JSON object (the mark of JSON Lines)."""
    for line in text.splitlines():
        if line.strip():
            if not line.lstrip().startswith("{"):
                return False
            try:
                return isinstance(json.loads(line), dict)
            except ValueError:
                return False
    return False


# --------------------------------------------------------------------------------------- reading each format


def _value_of(record: Any, where: str, column: str | None) -> str | None:
    """The prompt held by one JSON record: a string, or an object's prompt key; None when it is empty."""
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if column is not None:
            if column not in record:
                raise UserError(f"{where} has no key {column!r} (its keys: {_names(record)})")
            key = column
        else:
            key = next((k for k in PROMPT_KEYS if k in record), None)
            if key is None:
                raise UserError(f"{where} has none of the keys {_KEYS} (its keys: {_names(record)}): "
                                "name the key with --column NAME")
        value = record[key]
        if value is None or isinstance(value, str):
            return value
        raise UserError(f"{where}: the value of {key!r} is {type(value).__name__}, not text")
    raise UserError(f"{where} is {_kind(record)}, not a prompt: expected text or an object with one of the keys "
                    f"{_KEYS}")


def _names(record: dict) -> str:
    names = [repr(k) for k in list(record)[:12]]
    return ", ".join(names) + (", ..." if len(record) > 12 else "") if names else "none"


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "an array", dict: "an object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _jsonl_values(path: Path, text: str, column: str | None) -> tuple[list[str | None], str | None]:
    values, keys = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}, line {number} is not JSON ({exc.msg}): each line of a JSON Lines file must "
                            "be one JSON object or string") from None
        values.append(_value_of(record, f"{path}, line {number}", column))
        if isinstance(record, dict):
            keys.add(column or next(k for k in PROMPT_KEYS if k in record))
    return values, _one(keys)


def _json_values(path: Path, text: str, column: str | None) -> tuple[list[str | None], str | None]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    shape = (f"expected an array of prompts (strings, or objects with one of the keys {_KEYS}), or an object "
             "holding such arrays")
    if isinstance(document, dict):
        key = column if column is not None else next((k for k in PROMPT_KEYS if k in document), None)
        if key is not None and isinstance(document.get(key), str):
            return [document[key]], key  # one prompt object
        if isinstance(document.get("prompts"), list):
            arrays = [("prompts", document["prompts"])]
        else:
            arrays = [(k, v) for k, v in document.items() if isinstance(v, list)]
        if not arrays:
            raise UserError(f"{path} holds an object with no array of prompts (its keys: {_names(document)}): "
                            f"{shape}")
    elif isinstance(document, list):
        arrays = [(None, document)]
    else:
        raise UserError(f"{path} holds {_kind(document)}, not prompts: {shape}")
    values, keys = [], set()
    for name, array in arrays:
        for position, record in enumerate(array):
            where = f"{path}, item {position}" + (f" of {name!r}" if name is not None else "")
            values.append(_value_of(record, where, column))
            if isinstance(record, dict):
                keys.add(column or next(k for k in PROMPT_KEYS if k in record))
    return values, _one(keys)


def _one(keys: set[str]) -> str | None:
    return next(iter(keys)) if len(keys) == 1 else (", ".join(sorted(keys)) or None)


def _table_values(path: Path, text: str, delimiter: str, column: str | None) -> tuple[list[str | None], str]:
    csv.field_size_limit(2**31 - 1)  # captions can be long; the default 128 KiB limit would refuse them
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(row for row in rows if any(cell.strip() for cell in row))
    except StopIteration:
        raise UserError(f"{path} has no header line") from None
    except csv.Error as exc:
        raise UserError(f"{path} is not readable as {'CSV' if delimiter == ',' else 'TSV'}: {exc}") from None
    names = [cell.strip() for cell in header]
    chosen = _choose_column(path, names, column, "its header",
                            "the first line must name the columns; pick the prompt column with --column NAME")
    at = names.index(chosen)
    values: list[str | None] = []
    try:
        for row in rows:
            values.append(row[at] if at < len(row) else None)
    except csv.Error as exc:
        raise UserError(f"{path}, line {rows.line_num} is not readable: {exc}") from None
    return values, chosen


def _choose_column(path: Path, names: list[str], column: str | None, where: str, hint: str) -> str:
    """The prompt column of a table: ``column`` when given (it must exist), else the first of PROMPT_KEYS."""
    listed = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
    if column is not None:
        if column not in names:
            raise UserError(f"{path} has no column {column!r} (its columns: {listed})")
        return column
    chosen = next((k for k in PROMPT_KEYS if k in names), None)
    if chosen is None:
        raise UserError(f"{path} has none of the columns {_KEYS} ({where}: {listed}): {hint}")
    return chosen


def _parquet_values(path: Path, column: str | None) -> tuple[Iterable[str | None], str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise UserError("reading parquet prompt files needs pyarrow: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path} is not a readable parquet file: {exc}") from None
    names = list(parquet.schema_arrow.names)
    chosen = _choose_column(path, names, column, "its columns", "pick the prompt column with --column NAME")
    kind = parquet.schema_arrow.field(chosen).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserError(f"{path}: column {chosen!r} holds {kind}, not text")

    def values() -> Iterator[str | None]:
        try:
            for batch in parquet.iter_batches(columns=[chosen], batch_size=65536):
                yield from batch.column(0).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path} could not be read to the end: {exc}") from None

    return values(), chosen


# --------------------------------------------------------------------------------------- cleaning


def clean_prompt(value: str) -> str:
    """A prompt as CLIP's tokenizer cleans it: HTML entities unescaped (twice, for double-escaped captions),
    whitespace runs collapsed to one space, ends stripped."""
    return " ".join(html.unescape(html.unescape(value)).split())


def _finish(path: Path, fmt: str, values: Iterable[str | None], column: str | None) -> PromptFile:
    seen: dict[str, None] = {}
    records = 0
    for value in values:
        records += 1
        prompt = clean_prompt(value) if value else ""
        if prompt:
            seen.setdefault(prompt, None)
    if not seen:
        how = "write one prompt per line" if fmt == TEXT else f"every {column or 'prompt'} value is empty"
        raise UserError(f"{path} has no prompts: {how}")
    return PromptFile(path=path, format=fmt, prompts=list(seen), column=column, records=records)
