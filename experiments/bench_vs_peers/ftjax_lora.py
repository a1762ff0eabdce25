"""ftjax: the trainer's own jitted, sharded step (ftjax.train.setup, as `ftjax train` builds it), fed the same
batches: LoRA on every linear layer, AdamW, loss only at target positions (ftjax/loss.py).

    python ftjax_lora.py MODEL_DIR BATCHES.npz RESULT.json --rank=16 --warmup=2 --lr=1e-4 --dtype=float32 [--pack]

--pack: each step's rows packed into fewer rows of the same length first (`pack`, as data.packing packs them in
`ftjax train`): the same tokens and targets, less padding to compute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workload import load, time_steps, worker_parser, write_result


def pack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every step's rows placed first-fit, longest first, into rows of the same length T; each step gets as many
    rows as the fullest step needs (the spare ones stay padding, so every step has one shape). Adds segment_ids
    (1..k along a row, 0 on padding) and positions restarting at 0 in each segment. Per step, so each step keeps
    the rows the other frameworks train on (the trainer's grain packer fills rows across the whole stream)."""
    steps, b, t = arrays["input_ids"].shape
    lengths = arrays["attention_mask"].sum(-1)  # rows are right-padded: the real tokens come first
    bins = []  # per step: [[free tokens, [row, ...]], ...], one entry per packed row
    for step in range(steps):
        rows: list[list] = []
        for r in sorted(range(b), key=lambda r: -lengths[step, r]):
            fit = next((row for row in rows if row[0] >= lengths[step, r]), None)
            if fit is None:
                rows.append(fit := [t, []])
            fit[0] -= lengths[step, r]
            fit[1].append(r)
        bins.append(rows)
    width = max(len(rows) for rows in bins)
    out = {k: np.zeros((steps, width, t), v.dtype) for k, v in arrays.items()}
    out["segment_ids"] = np.zeros((steps, width, t), np.int32)
    out["positions"] = np.zeros((steps, width, t), np.int32)
    for step, rows in enumerate(bins):
        for i, (_, members) in enumerate(rows):
            at = 0
            for seg, r in enumerate(members, 1):
                n = lengths[step, r]
                for k, v in arrays.items():
                    out[k][step, i, at:at + n] = v[step, r, :n]
                out["segment_ids"][step, i, at:at + n] = seg
                out["positions"][step, i, at:at + n] = np.arange(n)
                at += n
    return out


def ftjax_batch(arrays: dict[str, np.ndarray], i: int, targets: int = 64) -> dict[str, np.ndarray]:
    """Step i's batch in the trainer's layout: targets are the next tokens, so the mask shifts left by one.
    `targets`: pad the target list to at least this many (the bench passes the most any step has, so every step
    has one shape; the trainer buckets per batch and compiles each bucket once per run)."""
    from ftjax.loss import target_positions

    ids, attn = arrays["input_ids"][i], arrays["attention_mask"][i]
    loss = np.zeros_like(attn)
    loss[:, :-1] = arrays["loss_mask"][i][:, 1:]  # a segment's first token is never a target, so none crosses
    if "segment_ids" in arrays:  # packed rows
        segments, positions = arrays["segment_ids"][i], arrays["positions"][i]
    else:
        segments, positions = attn.astype(np.int32), np.maximum(np.cumsum(attn, 1) - 1, 0).astype(np.int32)
    batch = {"inputs": ids, "targets": np.roll(ids, -1, axis=1), "attention_mask": attn, "positions": positions,
             "segment_ids": segments, "values": np.zeros(ids.shape, np.float32)}
    batch = {k: v[None] for k, v in batch.items()}  # one micro-batch
    batch["index"], batch["valid"] = target_positions(loss[None], minimum=targets)
    batch["weight"] = batch["valid"].astype(np.float32)  # every example at weight 1, as in the trainer
    return batch


def main() -> None:
    p = worker_parser(__doc__)
    p.add_argument("--attention", default="auto")
    p.add_argument("--remat", default="none")
    p.add_argument("--pack", action="store_true", help="pack each step's rows into fewer rows first")
    a = p.parse_args()
    import jax

    from ftjax import sharding
    from ftjax.config import load_config_file
    from ftjax.train.setup import setup

    arrays = load(Path(a.batches))
    if a.pack:
        arrays = pack(arrays)
    steps, b, t = arrays["input_ids"].shape
    config = load_config_file(Path(__file__).resolve().parents[2] / "configs" / "sft.py", None)
    config.unlock()
    config.model.update(path=a.model, dtype=a.dtype, attention=a.attention, remat=a.remat)
    config.peft.update(rank=a.rank, alpha=2.0 * a.rank, targets="all-linear", dropout=0.0)
    config.train.update(batch_size=b, learning_rate=a.lr, schedule="constant", warmup_steps=0)
    config.data.update(max_length=t)
    config.mesh.update(shape=(1, 1, 1))
    r = setup(config, total_steps=steps)
    state = r.state

    most = int(arrays["loss_mask"].reshape(steps, -1).sum(-1).max())
    most = 1 << max(most - 1, 0).bit_length()  # the trainer's power-of-two bucket of the largest step

    def step(i: int) -> tuple[float, float]:
        nonlocal state
        state, m = r.train_step(state, sharding.put_batch(ftjax_batch(arrays, i, most), r.batch_shardings))
        return float(m["loss"]), float(m["grad_norm"])

    result = time_steps(step, arrays, a.warmup)
    cost = r.train_step.lower(state, sharding.put_batch(ftjax_batch(arrays, 0, most), r.batch_shardings)).compile()
    analysis = cost.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    write_result(Path(a.result), result | {
        "framework": "ftjax (packed)" if a.pack else "ftjax", "shape": f"{b}x{t}", "dtype": a.dtype,
        "trainable_params": r.counts["trainable_params"],
        "attention": r.eval_model(state).attention_layers()[0].implementation,
        "hlo_flops_per_step": float(analysis.get("flops", 0.0)),
        "hlo_bytes_accessed_per_step": float(analysis.get("bytes accessed", 0.0)),
        "versions": {"jax": jax.__version__, "flax": __import__("flax").__version__}})


if __name__ == "__main__":
    main()
