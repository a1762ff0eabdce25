"""Rows from anywhere, as a list of dicts: local JSONL/JSON/CSV/Parquet files, Hugging Face `datasets`
(`hf:NAME[:config][@split]`, a hub name, a local data folder or a `save_to_disk` folder) and TensorFlow Datasets
(`tfds:NAME@split`). Every row carries `_source` and `_line` so later errors can point at file:line.
"""

from __future__ import annotations

import csv
import json
import os
from io import StringIO
from pathlib import Path
from typing import Any

from ftjax.io import parse_json, read_jsonl, read_text

TRACE = ("_source", "_line")


def load_rows(spec: str, columns: dict[str, str] | None = None) -> list[dict]:
    """spec: a local .jsonl/.json/.csv/.parquet path, `hf:NAME[:config][@split]`, or `tfds:NAME@split`.
    columns maps our field names to the source's column names (e.g. {"prompt": "mr", "completion": "ref"});
    unmapped columns pass through unchanged."""
    if spec.startswith("hf:"):
        rows = _hf_rows(spec)
    elif spec.startswith("tfds:"):
        rows = _tfds_rows(spec)
    else:
        rows = _file_rows(Path(spec))
    return [rename_columns(r, columns) for r in rows] if columns else rows


def rename_columns(row: dict, columns: dict[str, str]) -> dict:
    """The row with source columns renamed to our field names; a missing source column names file:line."""
    out = dict(row)
    for ours, theirs in columns.items():
        if theirs not in row:
            have = ", ".join(k for k in row if k not in TRACE)
            raise ValueError(f"{where(row)}: no column {theirs!r} (mapped to {ours!r}); columns are: {have}")
        del out[theirs]
    out.update({ours: row[theirs] for ours, theirs in columns.items()})
    return out


def where(row: dict) -> str:
    """`file:line` of a row, for error messages."""
    return f"{row.get('_source', '?')}:{row.get('_line', '?')}"


def strip_trace(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TRACE}


def parse_columns(text: str) -> dict[str, str]:
    """`prompt=mr,completion=ref` (as given on the command line) -> {"prompt": "mr", "completion": "ref"}."""
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ValueError(f"--columns must look like ours=theirs,ours=theirs (got {text!r})")
    return {a.strip(): b.strip() for a, b in pairs}


def _file_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    src = str(path)
    if suffix == ".jsonl":
        return [dict(row, _source=src, _line=n) for n, row in read_jsonl(path)]
    if suffix == ".json":
        text = read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            data = parse_json(text, str(path))  # raises the one-line error
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path}: expected a JSON list of objects (use .jsonl for one object per line)")
        return [dict(row, _source=src, _line=i) for i, row in enumerate(data, 1)]  # _line = item number
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [dict(row, _source=src, _line=i) for i, row in enumerate(table.to_pylist(), 1)]  # _line = row
    raise ValueError(f"{path}: unknown file type {suffix!r}; expected .jsonl, .json, .csv or .parquet "
                     "(or an hf: / tfds: spec)")


def _csv_rows(path: Path) -> list[dict]:
    reader = csv.DictReader(StringIO(read_text(path), newline=""), strict=True)
    rows: list[dict] = []
    try:
        for row in reader:
            if None in row:  # more cells than the header names
                raise ValueError(f"{path}:{reader.line_num}: more fields than the header has")
            if None in row.values():  # DictReader fills the cells a short row lacks with None
                raise ValueError(f"{path}:{reader.line_num}: {sum(v is not None for v in row.values())} of the "
                                 f"header's {len(row)} fields")
            rows.append(dict(row, _source=str(path), _line=reader.line_num))
    except csv.Error as e:  # line_num then counts the lines of the rows read before the bad one
        raise ValueError(f"{path}:{reader.line_num + 1}: not valid CSV ({e})") from None
    return rows


def _hf_rows(spec: str) -> list[dict]:
    import datasets

    name, _, split = spec[3:].partition("@")
    name, _, config = name.partition(":")
    if not name:
        raise ValueError(f"bad spec {spec!r}: expected hf:NAME[:config][@split]")
    split = split or "train"
    folder = Path(name)
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():  # a save_to_disk folder
        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{spec}: no split {split!r}; the folder has: {', '.join(ds)}")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(name, config or None, split=split)
    labels = {k: f.names for k, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
    return [dict(_named(row, labels), _source=spec, _line=i) for i, row in enumerate(ds, 1)]


def _tfds_rows(spec: str) -> list[dict]:
    import tensorflow_datasets as tfds

    name, _, split = spec[5:].partition("@")
    if not name or not split:
        raise ValueError(f"bad spec {spec!r}: expected tfds:NAME@split")
    data_dir = os.environ.get("TFDS_DATA_DIR")  # read per call: tfds reads it once at import
    try:  # array_record datasets need no TensorFlow
        source = tfds.data_source(name, split=split, data_dir=data_dir)
        features = source.dataset_info.features
        examples = (source[i] for i in range(len(source)))
    except NotImplementedError:  # TFRecord-only datasets go through tf.data
        examples = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir))
        features = tfds.builder(name, data_dir=data_dir).info.features
    labels = {k: f.names for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)}
    return [dict(_named(_plain(ex), labels), _source=spec, _line=i) for i, ex in enumerate(examples, 1)]


def _named(row: dict, labels: dict[str, list[str]]) -> dict:
    """Class-label integers as their names, so label sets and reports read as words."""
    return {k: labels[k][v] if k in labels and isinstance(v, int) and v >= 0 else v for k, v in row.items()}


def _plain(value: Any) -> Any:
    """numpy scalars, arrays and bytes from TFDS as Python values and strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
