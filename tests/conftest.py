"""Test set-up: 8 fake CPU devices so sharding is exercised on a laptop.

XLA reads the flag when the backend starts, so it must be set before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# One persistent compilation cache for the session: the end-to-end runs build new jitted closures
# around the same small models, whose programs are identical; later ones read them back.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="alignax-test-xla-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
