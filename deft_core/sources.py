"""Read raw records from files and Hub datasets, and write records back in the same file format."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deft_core.errors import DataError

FILE_FORMATS = {
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl.gz",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
BUNDLED_SAMPLE = Path(__file__).parent / "data" / "sample_hh.jsonl"


@dataclass(frozen=True)
class RawRow:
    """One input row: its 1-based location, and either the decoded record or why decoding failed."""

    line: int
    record: dict[str, Any] | None
    error: str = ""


@dataclass(frozen=True)
class DataSource:
    """The origin of a dataset: a local file, or a Hub dataset id with subset and split."""

    path: str
    kind: str  # one of FILE_FORMATS' values, or "hub"
    subset: str | None = None
    split: str = "train"

    @property
    def location_unit(self) -> str:
        return "line" if self.kind in ("jsonl", "jsonl.gz", "csv") else "record"

    def describe(self) -> str:
        if self.kind != "hub":
            return self.path
        subset = f" ({self.subset})" if self.subset else ""
        return f"{self.path}{subset} [{self.split}]"


def file_format(path: str | os.PathLike) -> str | None:
    name = str(path).lower()
    for suffix in sorted(FILE_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FILE_FORMATS[suffix]
    return None


def resolve_source(spec: str, subset: str | None = None, split: str = "train") -> DataSource:
    """Decide whether `spec` is a local file, the bundled sample or a Hub dataset id."""
    path = Path(spec).expanduser()
    if path.is_file():
        kind = file_format(path)
        if kind is None:
            allowed = ", ".join(FILE_FORMATS)
            raise DataError(f"{spec}: unsupported file type; use one of {allowed}")
        return DataSource(str(path.resolve()), kind)
    if path.is_dir():
        # A local folder is read like a Hub repository: datasets picks up its data files.
        return DataSource(str(path), "hub", subset, split)
    if spec == "sample":
        return DataSource(str(BUNDLED_SAMPLE), "jsonl")
    if file_format(spec) is None and HUB_ID.match(spec):
        return DataSource(spec, "hub", subset, split)
    raise DataError(f"{spec}: file not found (and not a Hugging Face dataset id such as 'owner/name')")


def read_rows(source: DataSource) -> Iterator[RawRow]:
    """Yield every row of the source in order; undecodable rows come with an error, not a record."""
    readers = {
        "jsonl": read_jsonl,
        "jsonl.gz": read_jsonl,
        "json": read_json,
        "parquet": read_parquet,
        "csv": read_csv,
        "hub": read_hub,
    }
    yield from readers[source.kind](source)


def open_text(path: str) -> io.TextIOBase:
    """Open a text file, gzip-compressed or not; a UTF-8 BOM is dropped and CRLF becomes LF."""
    if path.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="strict")
    return open(path, encoding="utf-8-sig", errors="strict")


def read_jsonl(source: DataSource) -> Iterator[RawRow]:
    with open_text(source.path) as handle:
        line_number = 0
        while True:
            line_number += 1
            try:
                line = handle.readline()
            except UnicodeDecodeError as error:
                yield RawRow(line_number, None, f"invalid UTF-8 ({error.reason})")
                return
            if not line:
                return
            if not line.strip():
                continue
            # Without the line break, a line cut short reports the column where it ends.
            yield decode_json_row(line_number, line.rstrip("\r\n"))


def decode_json_row(line_number: int, text: str) -> RawRow:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return RawRow(line_number, None, f"invalid JSON: {error.msg} at column {error.colno}")
    if not isinstance(value, dict):
        return RawRow(line_number, None, f"expected a JSON object, got {type(value).__name__}")
    return RawRow(line_number, value)


def read_json(source: DataSource) -> Iterator[RawRow]:
    """Read a JSON array of objects, or JSON Lines stored under a .json name."""
    try:
        with open_text(source.path) as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise DataError(f"{source.path}: not valid UTF-8 ({error.reason})") from error
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("{"):
            for line_number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    yield decode_json_row(line_number, line)
            return
        raise DataError(f"{source.path}: invalid JSON at line {error.lineno}: {error.msg}") from error
    if isinstance(value, dict):
        lists = [key for key, item in value.items() if isinstance(item, list)]
        if len(lists) != 1:
            raise DataError(f"{source.path}: expected a JSON array of records (or an object with one list)")
        value = value[lists[0]]
    if not isinstance(value, list):
        raise DataError(f"{source.path}: expected a JSON array of records, got {type(value).__name__}")
    for index, item in enumerate(value, start=1):
        if isinstance(item, dict):
            yield RawRow(index, item)
        else:
            yield RawRow(index, None, f"expected a JSON object, got {type(item).__name__}")


def read_parquet(source: DataSource) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source.path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise DataError(f"{source.path}: cannot read Parquet file ({error})") from error
    for index, record in enumerate(table.to_pylist(), start=1):
        yield RawRow(index, record)


def read_csv(source: DataSource) -> Iterator[RawRow]:
    try:
        with open(source.path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            start_line = 2  # line 1 is the header
            for record in reader:
                if None in record:
                    yield RawRow(start_line, None, "row has more fields than the header")
                else:
                    yield RawRow(start_line, dict(record))
                start_line = reader.line_num + 1
    except UnicodeDecodeError as error:
        raise DataError(f"{source.path}: not valid UTF-8 ({error.reason})") from error
    except csv.Error as error:
        raise DataError(f"{source.path}: invalid CSV ({error})") from error


def read_hub(source: DataSource) -> Iterator[RawRow]:
    """Read a dataset through `datasets.load_dataset`: a Hub id, or a local folder of data files."""
    import datasets

    try:
        dataset = datasets.load_dataset(source.path, source.subset, split=source.split)
    except Exception as error:  # datasets raises many types: offline, not found, bad split...
        raise DataError(
            f"{source.describe()}: cannot load dataset ({type(error).__name__}: {error})"
        ) from error
    for index, record in enumerate(dataset, start=1):
        yield RawRow(index, dict(record))


def write_records(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> None:
    """Write raw records atomically, in the format given by the file name's extension."""
    path = Path(path)
    kind = file_format(path)
    if kind is None:
        raise DataError(f"{path}: unsupported output type; use one of {', '.join(FILE_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        if kind in ("jsonl", "jsonl.gz"):
            opener = gzip.open if kind == "jsonl.gz" else open
            with opener(temporary, "wt", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif kind == "json":
            temporary.write_text(json.dumps(list(records), ensure_ascii=False, indent=2), encoding="utf-8")
        elif kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(list(records)), temporary)
        else:
            write_csv(temporary, records)


def write_csv(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    columns: list[str] = []
    for record in records:
        columns.extend(key for key in record if key not in columns)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            # Nested values (message lists) have no CSV form, so they are stored as JSON text.
            writer.writerow(
                {
                    key: value
                    if isinstance(value, str | int | float) or value is None
                    else json.dumps(value, ensure_ascii=False)
                    for key, value in record.items()
                }
            )


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    target = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
