"""Load a preference dataset into PreferencePair records, with an audit of everything read."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from deft_core.audit import ROW_ERRORS, LoadAudit
from deft_core.errors import DataError
from deft_core.formats import RecordError, apply_column_mapping, parse_record
from deft_core.pairs import PreferencePair
from deft_core.sources import DataSource, read_rows, resolve_source

logger = logging.getLogger(__name__)

DEFT_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass
class DataOptions:
    """How to read a dataset: where it is and how its columns map onto a preference pair."""

    path: str
    subset: str | None = None  # Hub datasets only: the configuration name
    split: str = "train"  # Hub datasets only
    columns: dict[str, str] = field(default_factory=dict)  # deft name -> input column name
    on_error: Literal["skip", "raise"] = "skip"  # bad rows: skip and report, or fail the load
    limit: int | None = None  # read at most this many pairs

    def __post_init__(self) -> None:
        problems = []
        unknown = sorted(set(self.columns) - set(DEFT_COLUMNS))
        if unknown:
            problems.append(f"unknown column mapping target(s) {unknown}; allowed: {', '.join(DEFT_COLUMNS)}")
        if self.on_error not in ("skip", "raise"):
            problems.append(f"on_error must be 'skip' or 'raise', got {self.on_error!r}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be at least 1, got {self.limit}")
        if problems:
            raise DataError("; ".join(problems))

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "subset": self.subset,
            "split": self.split,
            "columns": dict(self.columns),
            "on_error": self.on_error,
            "limit": self.limit,
        }


@dataclass
class LoadedData:
    """The pairs of one dataset, the audit of reading it, and where it came from."""

    pairs: list[PreferencePair]
    audit: LoadAudit
    source: DataSource
    options: DataOptions

    @property
    def fingerprint(self) -> str:
        """Return a hash of every pair's id and text: equal fingerprints mean equal pair lists."""
        digest = hashlib.sha256()
        for pair in self.pairs:
            content = [pair.id, pair.prompt, pair.chosen, pair.rejected]
            digest.update(json.dumps(content, ensure_ascii=False).encode())
        return digest.hexdigest()[:32]


def parse_columns(text: str | None) -> dict[str, str]:
    """Parse a column mapping written as "prompt=question,chosen=good,rejected=bad"."""
    if not text:
        return {}
    columns = {}
    for item in text.split(","):
        target, sep, source = item.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise DataError(
                f"invalid column mapping {item!r}; write it as deft_name=input_column, e.g. prompt=question"
            )
        columns[target.strip()] = source.strip()
    DataOptions("", columns=columns)  # validates the target names
    return columns


def load_pairs(options: DataOptions) -> LoadedData:
    """Read a dataset and return its valid pairs with an audit of every skipped or flagged row.

    Rows that cannot form a pair are skipped and reported, or raise DataError when
    `options.on_error == "raise"`. Identical responses and duplicates are kept and flagged.
    """
    source = resolve_source(options.path, options.subset, options.split)
    audit = LoadAudit(source=source.describe(), location_unit=source.location_unit)
    pairs: list[PreferencePair] = []
    layouts: Counter = Counter()
    registry = PairRegistry(audit)

    first_fields: list[str] = []
    for row in read_rows(source):
        audit.rows_read += 1
        if not first_fields and isinstance(row.record, dict):
            first_fields = [str(name) for name in row.record]
        try:
            if row.record is None:
                raise RecordError("unparseable", "", row.error)
            record = apply_column_mapping(row.record, options.columns)
            layout, prompt, chosen, rejected = parse_record(record)
            if not chosen or not rejected:
                empty = "chosen" if not chosen else "rejected"
                raise RecordError("empty_response", empty, f"{empty} response is empty")
        except RecordError as error:
            # Name the field unless the message already does.
            where = f"field {error.field!r}: " if error.field and repr(error.field) not in str(error) else ""
            audit.add(
                error.kind,
                row.line,
                f"{where}{error}",
                error.field,
                json.dumps(row.record, ensure_ascii=False)[:200] if row.record else "",
            )
            if options.on_error == "raise":
                raise DataError(f"{audit.where(row.line)}: {where}{error}") from None
            continue

        layouts[layout] += 1
        pair = PreferencePair(
            id="",
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            source=source.describe(),
            line=row.line,
            raw=row.record,
        )
        registry.register(pair)
        pairs.append(pair)
        if options.limit is not None and len(pairs) >= options.limit:
            break

    audit.pairs_loaded = len(pairs)
    audit.format = "+".join(name for name, _ in layouts.most_common()) or "unknown"
    if not pairs:
        raise DataError(no_pairs_message(audit, first_fields))
    logger.info(
        "loaded %d pairs from %s (%d rows skipped)", len(pairs), source.describe(), audit.rows_skipped
    )
    return LoadedData(pairs, audit, source, options)


def no_pairs_message(audit: LoadAudit, first_fields: list[str]) -> str:
    """Say why a load found no pair: no rows, or the most common problem with its first example."""
    if audit.rows_read == 0:
        return f"{audit.source}: no usable preference pairs: the input has no rows"
    kind, count = audit.counts.most_common(1)[0]
    example = audit.examples[kind][0]
    rows = audit.rows_read
    skipped = "its only row was skipped" if rows == 1 else f"all {rows} rows were skipped"
    message = (
        f"{audit.source}: no usable preference pairs: {skipped}; "
        f"{count} {kind} ({ROW_ERRORS.get(kind, kind)}), the first at {audit.where(example.line)}: "
        f"{example.message}"
    )
    if kind == "missing_field" and first_fields:
        message += (
            f". The rows have the fields {', '.join(first_fields)}; map them onto deft's fields with "
            "--columns prompt=NAME,chosen=NAME,rejected=NAME (the dashboard's Data page has the same "
            "mapping)"
        )
    return message


def content_hash(pair: PreferencePair) -> str:
    text = json.dumps([pair.prompt, pair.chosen, pair.rejected], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class PairRegistry:
    """Assign content-based pair ids and flag duplicates and identical responses."""

    def __init__(self, audit: LoadAudit) -> None:
        self.audit = audit
        self.first_line: dict[str, int] = {}
        self.count: Counter = Counter()

    def register(self, pair: PreferencePair) -> None:
        """Set `pair.id` (stable across files and runs; repeats get "-2", "-3") and its flags."""
        digest = content_hash(pair)
        self.count[digest] += 1
        if self.count[digest] == 1:
            pair.id = digest
            self.first_line[digest] = pair.line
        else:
            pair.id = f"{digest}-{self.count[digest]}"
            pair.flags.append("duplicate")
            self.audit.add(
                "duplicate", pair.line, f"same pair as {self.audit.location_unit} {self.first_line[digest]}"
            )
        if pair.chosen == pair.rejected:
            pair.flags.append("identical_responses")
            self.audit.add("identical_responses", pair.line, "chosen and rejected responses are identical")
