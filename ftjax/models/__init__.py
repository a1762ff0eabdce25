"""Flax NNX ports of decoder LLM families that load Hugging Face checkpoints."""

from ftjax.models.config import SUPPORTED_MODEL_TYPES, ModelConfig, from_hf
from ftjax.models.decoder import CausalLM
from ftjax.models.gpt2 import GPT2LM
from ftjax.models.loading import build, from_pretrained, save_pretrained

__all__ = ["SUPPORTED_MODEL_TYPES", "CausalLM", "GPT2LM", "ModelConfig", "build", "from_hf", "from_pretrained",
           "save_pretrained"]
