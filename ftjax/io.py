"""Files that appear whole or not at all: every output is written under a temp name in its folder, then renamed.

    write_text(path, text) / write_json(path, obj) / write_jsonl(path, rows)
    with atomic_file(path) as tmp: fig.savefig(tmp)          # any writer that wants a path
    with atomic_dir(out) as tmp: (tmp / "a.safetensors")...   # a folder, renamed into place when complete

A folder output never replaces an existing folder unless the caller says so (`overwrite=True`, the commands'
--overwrite), and `check_outside` refuses an output inside (or around) a folder it must not touch.

Outputs get ordinary permissions (0644 files, 0755 folders; mkstemp/mkdtemp make them private). JSON Lines
are read here too, so that a malformed line is an error naming file:line.
"""

from __future__ import annotations

import contextlib
import hashlib
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
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """`with atomic_dir(out) as tmp:` fill tmp; on success tmp becomes `out`, on error nothing is left. An
    existing `out` is a FileExistsError (checked before any work), or is replaced when `overwrite`."""
    out = Path(out)
    check_new_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        for p in (tmp, *tmp.rglob("*")):  # ordinary permissions (mkdtemp and some writers make private ones)
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        check_new_dir(out, overwrite)  # it may have appeared meanwhile
        if out.exists():
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            out.rename(old)  # out is never missing for more than a rename, and never half-written
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_new_dir(out: str | os.PathLike, overwrite: bool) -> None:
    """A FileExistsError if folder output `out` exists (unless `overwrite`) or is a file."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another output or pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder; choose another output")


def check_outside(out: str | os.PathLike, *protected: str | os.PathLike) -> None:
    """A ValueError if output folder `out` is or contains one of the `protected` paths, or is an existing folder
    inside one (replacing it would damage the source); a new folder inside one is fine."""
    o = Path(out).resolve()
    for p in protected:
        q = Path(p).resolve()
        if o == q or o in q.parents or (q in o.parents and o.exists()):
            raise ValueError(f"--out={out} would overwrite {p} (a source of this command); choose another folder")


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


def check_writable(path: str | os.PathLike) -> None:
    """An OSError now, not after hours of work, when file `path` could not be written (its folder is made)."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder; give a file name")
    blocker = next((a for a in p.parents if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(f"cannot write {p}: {blocker} is a file, not a folder")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    os.close(fd)
    os.unlink(tmp)


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file; bytes that are not UTF-8 are a ValueError naming file:line."""
    p = Path(path)
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{p}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); re-encode the file as "
                         "UTF-8") from None


def parse_json(text: str, where: str) -> object:
    """json.loads with one-line errors that name `where` (file:line): malformed, or nested too deeply."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply to read") from None


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a malformed line is a ValueError naming file:line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    for n, line in enumerate(read_text(p).splitlines(), 1):
        if not line.strip():
            continue
        row = parse_json(line, f"{p}:{n}")
        if not isinstance(row, dict):
            raise ValueError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}")
        yield n, row


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes (a data fingerprint)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
