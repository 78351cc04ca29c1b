"""alignax: learning from preferences in JAX."""

import flax

# Parameters carry logical sharding names; we place them ourselves (alignax.sharding), so Flax must
# not try to shard each variable eagerly when it is created.
flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"
