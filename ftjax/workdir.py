"""Small file helpers for workdirs: JSON written atomically (temp name, then rename)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ftjax.textfile import write_text_atomic


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str))
