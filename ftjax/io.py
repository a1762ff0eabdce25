"""Files that appear whole or not at all: every output is written under a temp name in its folder, then renamed.

    write_text(path, text) / write_json(path, obj) / write_jsonl(path, rows)
    with atomic_file(path) as tmp: fig.savefig(tmp)          # any writer that wants a path
    with atomic_dir(out) as tmp: (tmp / "a.safetensors")...   # a folder, renamed into place when complete

Outputs get ordinary permissions (0644 files, 0755 folders; mkstemp/mkdtemp make them private). JSON Lines
are read here too, so that a malformed line is an error naming file:line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_file(p) as tmp:` write tmp; on success it replaces p, on error nothing is left behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_dir(out) as tmp:` fill tmp; on success tmp replaces `out`, on error nothing is left."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write all of `text` or nothing; `newline=""` keeps csv's own line endings."""
    with atomic_file(path) as tmp:
        with tmp.open("w", encoding="utf-8", newline=newline) as f:
            f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a malformed line is a ValueError naming file:line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}")
            yield n, row
