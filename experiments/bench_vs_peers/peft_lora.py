"""Hugging Face transformers + PEFT: LoRA on every linear layer, AdamW, one process, the same batches.

    python peft_lora.py MODEL_DIR BATCHES.npz RESULT.json --rank=16 --warmup=2 --lr=1e-4 --dtype=float32
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from workload import load, time_steps, worker_parser, write_result


def main() -> None:
    p = worker_parser(__doc__)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    arrays = load(Path(a.batches))
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype))
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules="all-linear",
                                             lora_dropout=0.0))
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    ids = torch.from_numpy(arrays["input_ids"]).long()
    attn = torch.from_numpy(arrays["attention_mask"]).long()
    labels = torch.where(torch.from_numpy(arrays["loss_mask"]), ids, torch.full_like(ids, -100))

    def step(i: int) -> tuple[float, float]:
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids[i], attention_mask=attn[i], labels=labels[i])
        out.loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)  # as ftjax's default max_grad_norm
        opt.step()
        return float(out.loss), float(norm)

    result = time_steps(step, arrays, a.warmup)
    trainable = sum(q.numel() for q in params)
    write_result(Path(a.result), result | {"framework": "peft", "trainable_params": trainable,
                                           "versions": {"torch": torch.__version__,
                                                        "transformers": __import__("transformers").__version__,
                                                        "peft": __import__("peft").__version__},
                                           "threads": torch.get_num_threads(), "dtype": a.dtype})


if __name__ == "__main__":
    main()
