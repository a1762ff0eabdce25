"""Model-generated examples from seed rows: the plan of requests, prompt templates, batched sampling with the KV
cache, and a resumable append-only candidates file.

Requests, in plan order: `paraphrase` (per_seed per seed row: its input reworded, its label or completion
kept), `new` (classification: `new` inputs per label in the style of `shots` seeds of that label; prompt and
completion rows: `new` prompts in the style of `shots` seeds, whose completions the model then writes with
the `target` template, greedily). Requests are cut into batches of `batch_size`; batch b samples with seed
`seed * 1_000_003 + b`, so a batch's rows depend only on the config and the seeds, and a killed run that reruns
a batch writes what the first would have. A batch's rows go to the candidates file in one append, tagged with
the batch; on restart, batches already there are skipped and a half-written tail is cut off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ftjax.augment.validate import FIELDS

PLACEHOLDERS = {"paraphrase": {"text", "label", "label_words", "target"}, "new": {"examples", "label", "label_words"},
                "target": {"prompt"}}


@dataclasses.dataclass(frozen=True)
class Request:
    method: str  # paraphrase | new | target
    prompt_id: str  # template name:hash of its text
    prompt: str  # the filled template
    keep: dict  # fields the new row keeps (label, completion or prompt)
    origin: str  # the seed rows it was made from, file:line


def prompt_id(name: str, template: str) -> str:
    """`name:hash`: a changed template text is a different prompt."""
    return f"{name}:{hashlib.sha256(template.encode()).hexdigest()[:8]}"


def check_templates(templates: dict[str, str]) -> None:
    """One-line errors for a template with an unknown placeholder or that does not parse."""
    for name, text in templates.items():
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown template augment.templates.{name}; have: {', '.join(PLACEHOLDERS)}")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as e:
            raise ValueError(f"augment.templates.{name}: {e}") from None
        if fields - PLACEHOLDERS[name]:
            raise ValueError(f"augment.templates.{name}: unknown placeholder(s) {sorted(fields - PLACEHOLDERS[name])}; "
                             f"it may use {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS[name]))}")


def words(label: str) -> str:
    """`card_payment_fee_charged` -> `card payment fee charged`, for prompts."""
    return label.replace("_", " ").replace("-", " ")


def origin(row: dict) -> str:
    return f"{Path(str(row.get('_source', '?'))).name}:{row.get('_line', '?')}"


def plan(seeds: Sequence[dict], fmt: str, templates: dict[str, str], methods: Sequence[str], per_seed: int,
         new: int, shots: int, seed: int) -> list[Request]:
    """Every generation request, deterministic in its arguments."""
    text_field, target_field = FIELDS[fmt]
    requests = []
    if "paraphrase" in methods:
        pid = prompt_id("paraphrase", templates["paraphrase"])
        for row in seeds:
            target = str(row[target_field])
            prompt = templates["paraphrase"].format(text=row[text_field], label=target, target=target,
                                                    label_words=words(target))
            requests += [Request("paraphrase", pid, prompt, {target_field: row[target_field]}, origin(row))] * per_seed
    if "new" in methods:
        pid = prompt_id("new", templates["new"])
        groups: dict[str, list[dict]] = {}
        for row in seeds:
            groups.setdefault(str(row[target_field]) if fmt == "classification" else "", []).append(row)
        for g, (label, rows) in enumerate(sorted(groups.items())):
            for j in range(new):
                pick = np.random.default_rng([seed, g, j]).choice(len(rows), min(shots, len(rows)), replace=False)
                examples = "\n".join(f"- {rows[i][text_field]}" for i in pick)
                keep = {"label": label} if fmt == "classification" else {}
                prompt = templates["new"].format(examples=examples, label=label, label_words=words(label))
                requests.append(Request("new", pid, prompt, keep,
                                        ",".join(origin(rows[i]) for i in pick)))
    return requests


_LEAD = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|(?:rewritten|message|request|answer|output)\s*:)\s*", re.IGNORECASE)


def clean(text: str) -> str:
    """The first non-empty line of a generation, without list markers, a `Rewritten:`-style lead or quotes."""
    line = next((s for s in text.splitlines() if s.strip()), "")
    line = _LEAD.sub("", line).strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'\u201c":
        line = line[1:-1].strip()
    return line.strip("\u201c\u201d").strip()


class Candidates:
    """The append-only candidates file: rows tagged with their batch (`_batch`)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[int, list[dict]] = {}
        if path.exists():
            raw = path.read_bytes()
            complete = raw[: raw.rfind(b"\n") + 1]  # a kill mid-write leaves at most a partial last line
            if len(complete) != len(raw):
                with path.open("r+b") as f:
                    f.truncate(len(complete))
            for line in complete.decode("utf-8").splitlines():
                row = json.loads(line)
                self.done.setdefault(row["_batch"], []).append(row)

    def write(self, batch: int, rows: list[dict]) -> None:
        """All of a batch's rows in one append, flushed to disk before the next batch starts."""
        text = "".join(json.dumps(dict(r, _batch=batch), ensure_ascii=False) + "\n" for r in rows)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.done[batch] = [dict(r, _batch=batch) for r in rows]


@dataclasses.dataclass(frozen=True)
class Generator:
    """A loaded model and how to sample from it."""

    model: Any
    tokenizer: Any
    name: str  # what produced the rows (a model path or a workdir), recorded in `generator`
    chat: bool  # wrap each prompt as a user turn with the tokenizer's chat template (an instruction-tuned model)
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    one_line: bool  # stop at the end of the first line (rows are one line; a base model continues a list)

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        from ftjax.models.tokenizer import encode_prompt

        chat = self.chat and bool(getattr(self.tokenizer, "chat_template", None))
        return [encode_prompt(self.tokenizer, p, chat=chat) for p in prompts]

    def complete(self, ids: Sequence[list[int]], seed: int, batch_size: int, width: int, greedy: bool = False
                 ) -> list[str]:
        """Completions of prompt ids; the batch is filled up to `batch_size` and padded to `width`, so that
        every batch of a job runs one compiled program."""
        from ftjax.models.generate import Sampling, generate
        from ftjax.models.tokenizer import padding_id, stop_token_ids

        stops = stop_token_ids(self.tokenizer, self.model.config.eos_ids)
        if self.one_line:
            stops += tuple(i for i in self.tokenizer("\n", add_special_tokens=False)["input_ids"] if i not in stops)
        sampling = Sampling(self.max_new_tokens, 0.0 if greedy else self.temperature, self.top_k, self.top_p,
                            seed=seed, stop_token_ids=stops)
        pad = padding_id(self.tokenizer)
        filled = list(ids) + [ids[0]] * (batch_size - len(ids))
        out = generate(self.model, filled, sampling, pad, multiple=width)[:len(ids)]
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)


def run_requests(generator: Generator, requests: Sequence[Request], fmt: str, batch_size: int, seed: int,
                 candidates: Candidates, stage: int) -> list[dict]:
    """Generate every request not yet in `candidates` (batches numbered from `stage * 1_000_000`), and return
    all of the stage's rows in plan order."""
    text_field, target_field = FIELDS[fmt]
    first = stage * 1_000_000
    batches = range(0, len(requests), batch_size)
    todo = [b for b in batches if first + b // batch_size not in candidates.done]
    ids = generator.encode([r.prompt for r in requests]) if todo else []
    width = -(-max(map(len, ids), default=1) // 16) * 16  # the job's longest prompt: one width, one compile
    for start in tqdm(todo, desc=f"augment ({'targets' if stage else 'inputs'})", unit="batch", file=sys.stderr,
                      disable=not todo):
        b = first + start // batch_size
        chunk = requests[start:start + batch_size]
        sample_seed = seed * 1_000_003 + b
        texts = generator.complete(ids[start:start + batch_size], sample_seed, batch_size, width, greedy=stage == 1)
        rows = []
        for r, text in zip(chunk, texts):
            row = {target_field if stage else text_field: clean(text), "source": "synthetic", "method": r.method,
                   "generator": generator.name, "prompt_id": r.prompt_id, "seed": sample_seed, "origin": r.origin}
            rows.append({**row, **r.keep})  # stage 2 keeps its prompt's seed
        candidates.write(b, rows)
    return [row for b in batches for row in candidates.done[first + b // batch_size]]


def target_requests(rows: Sequence[dict], templates: dict[str, str]) -> list[Request]:
    """Stage 2 for new prompt/completion rows: each new prompt, asked of the model for its completion."""
    pid = prompt_id("target", templates["target"])
    return [Request(r["method"], f"{r['prompt_id']}+{pid}", templates["target"].format(prompt=r["prompt"]),
                    {"prompt": r["prompt"], "seed": r["seed"]}, r["origin"]) for r in rows]
