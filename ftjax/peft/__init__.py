"""Parameter-efficient fine-tuning: LoRA, DoRA, (IA)3, prompt and prefix tuning, and full fine-tuning.

    model = ftjax.models.from_pretrained(path)
    apply_peft(model, {"method": "lora", "rank": 16, "targets": "all-linear"})   # adapter 'default', active
    optimizer = nnx.Optimizer(model, optax.adamw(1e-4), wrt=trainable_filter(cfg))   # adapter weights only
    save_adapter(model, "out/adapter"); export_peft(model, "out/peft")
"""

from ftjax.peft.files import load_adapter, save_adapter
from ftjax.peft.apply import apply_peft, find_targets, trainable_filter
from ftjax.peft.config import default_config, peft_config
from ftjax.peft.hf_export import export_peft
from ftjax.peft.hf_import import import_peft
from ftjax.peft.merge import merge, merged_model, unmerge
from ftjax.peft.state import active_adapter, adapter_names, set_adapter, use_adapter
from ftjax.peft.report import method_table, parameter_report

__all__ = ["active_adapter", "adapter_names", "apply_peft", "default_config", "export_peft", "find_targets",
           "import_peft", "load_adapter", "merge", "merged_model", "method_table", "parameter_report", "peft_config",
           "save_adapter", "set_adapter", "trainable_filter", "unmerge", "use_adapter"]
