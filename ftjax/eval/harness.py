"""lm-evaluation-harness on ftjax models (`ftjax eval --harness=TASKS`): general ability before and after
fine-tuning, the catastrophic-forgetting check, on any lm-eval task (its registry, or YAML files of your own
through --harness_include).

`HarnessLM` implements lm-eval's `LM` interface with ftjax's own batched, bucketed scoring and KV-cache
generation: `loglikelihood` (teacher-forced NLL of the continuation and whether greedy decoding gives it),
`loglikelihood_rolling` (lm-eval's rolling windows), `generate_until` (greedy, cut at the task's stop strings).
Context and continuation are tokenized the way lm-eval's Hugging Face backend does (the whole text, then split;
trailing spaces of the context move to the continuation), so the two backends score the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx

from ftjax.eval.scoring import sequence_scores
from ftjax.models.generate import Sampling, generate
from ftjax.models.tokenizer import padding_id


def _lm_base() -> type:
    from lm_eval.api.model import LM

    return LM


class HarnessLM:
    """Built by `harness_lm(model, tokenizer)`, which makes it an lm_eval `LM` subclass at call time (lm-eval is
    an optional extra, imported only when a harness run is asked for)."""

    def __init__(self, model: nnx.Module, tokenizer: Any, batch_size: int = 16, max_length: int = 2048,
                 max_new_tokens: int = 256):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length, self.max_new_tokens = batch_size, max_length, max_new_tokens
        self.pad_id = padding_id(tokenizer)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix = [prefix] if prefix is not None else []

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def _pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if not context:
            return self.prefix, self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, ctx = self._encode(context + continuation), self._encode(context)
        return ctx, whole[len(ctx):]

    def _score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        examples = []
        for ctx, cont in pairs:
            ids = (ctx + cont)[-(self.max_length + 1):]
            examples.append({"input_ids": ids, "loss_mask": [0] * (len(ids) - len(cont)) + [1] * len(cont)})
        nll, count, hits = sequence_scores(self.model, examples, self.batch_size, self.pad_id, progress=False)
        return [(-float(n), bool(h == c)) for n, c, h in zip(nll, count, hits)]

    def loglikelihood(self, requests: list) -> list[tuple[float, bool]]:
        return self._score([self._pair(*r.args) for r in requests])

    def loglikelihood_rolling(self, requests: list) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for r in requests:
            ids = self.tokenizer(r.args[0], add_special_tokens=False)["input_ids"]
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                ids, prefix_token=self.prefix[0] if self.prefix else self.pad_id, max_seq_len=self.max_length,
                context_len=1)]
            out.append(sum(ll for ll, _ in self._score(windows)))
        return out

    def generate_until(self, requests: list) -> list[str]:
        out = []
        for r in requests:
            context, kwargs = r.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(kwargs.get("max_gen_toks", self.max_new_tokens))
            ids = self._encode(context)[-self.max_length:]
            new = generate(self.model, [ids], Sampling(max_new_tokens=n, stop_token_ids=tuple(
                self.model.config.eos_ids)), pad_id=self.pad_id)[0]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            cut = min((text.index(s) for s in until if s and s in text), default=len(text))
            out.append(text[:cut])
        return out


def harness_lm(model: nnx.Module, tokenizer: Any, **kwargs: Any) -> Any:
    """An lm_eval `LM` over `model` (the subclass is made here so that lm-eval stays an optional import)."""
    cls = type("FtjaxHarnessLM", (HarnessLM, _lm_base()), {})
    return cls(model, tokenizer, **kwargs)


def run_harness(model: nnx.Module, tokenizer: Any, tasks: Sequence[str], include: str | None = None,
                limit: int | None = None, num_fewshot: int | None = None, batch_size: int = 16,
                seed: int = 0) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from lm_eval.simple_evaluate on the ftjax model."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError("--harness needs lm-evaluation-harness: pip install 'ftjax[harness]'") from None
    manager = TaskManager(include_path=include) if include else TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"--harness task {unknown[0]!r} is not an lm-eval task"
                         + ("" if include else " (your own YAML tasks: --harness_include=DIR)"))
    results = lm_eval.simple_evaluate(model=harness_lm(model, tokenizer, batch_size=batch_size), tasks=list(tasks),
                                      task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                                      random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                      fewshot_random_seed=seed, log_samples=False)
    return {task: {k.split(",")[0]: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float, np.floating)) and not k.endswith("_stderr,none") and k != "alias"}
            for task, metrics in results["results"].items()}
