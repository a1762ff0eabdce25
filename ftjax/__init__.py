"""ftjax: fine-tuning LLMs in JAX with Flax NNX."""

import flax

# Parameters carry logical axis names; ftjax maps them to a mesh explicitly (sharding rules), so variables
# must not try to shard themselves eagerly at creation, which needs a global mesh.
flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"
