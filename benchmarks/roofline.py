"""The roofline every timed step is read against: its model FLOPs and this host's measured float32
matmul peak, for each framework in the same run.

Model FLOPs, one count everywhere (PaLM's, appendix B): a forward pass over `rows` sequences of
`length` tokens is 2 x matmul parameters x tokens (every weight but an untied embedding table,
which is only gathered from) plus 4 x layers x rows x length^2 x d_model for attention's two
products; a trained forward and backward is three forwards. The count is of the whole sequence
whatever a side skips (an LM head read only at response positions counts as computed), and of
the work the step needs, not what an implementation adds: a rollout's extra forward for the old
policy's log-probs is not counted. A side's roofline time is model FLOPs / its framework's
matmul peak; its fraction of the roofline is that time over its measured time (= achieved
FLOP/s over the peak).

The peak is the best rate of float32 n x n x n matmuls (`PEAK_SIZES`) timed interleaved with the
compared cases: JAX's (XLA's CPU dot) and torch's (its BLAS with the threads torch uses), each
framework's own limit on this host; a step computing in bfloat16 is read against JAX's bfloat16
matmuls ('JAX bf16').
"""

from __future__ import annotations

import numpy as np

PEAK_SIZES = (512, 1024, 2048)
PEAK_CASE = "matmul {n} ({framework})"


def forward_flops(config, rows: int, length: int, *, lm_head: bool = True) -> float:
    """Model FLOPs of one forward pass over `rows` sequences of `length` tokens; `lm_head=False`
    for a model read through another head (a reward model's scalar)."""
    c = config
    embed = c.vocab_size * c.d_model
    # The embedding table is only gathered from; the LM head (the table itself when tied) is a
    # matmul. `num_params` counts a tied table once, an untied model's table and head each.
    matmul_params = c.num_params() - embed * (1 if c.tie_embeddings else 2) + embed * lm_head
    attention = 4.0 * c.num_layers * rows * length**2 * c.d_model
    return 2.0 * matmul_params * rows * length + attention


def train_step_flops(config, rows: int, length: int, *, lm_head: bool = True) -> float:
    """A trained forward and backward: three forwards."""
    return 3.0 * forward_flops(config, rows, length, lm_head=lm_head)


def dpo_step_flops(config, pairs: int, length: int) -> float:
    """A DPO step with the reference forward in it: both options trained, both scored by the
    reference."""
    return train_step_flops(config, 2 * pairs, length) + forward_flops(config, 2 * pairs, length)


def lora_dpo_step_flops(config, pairs: int, length: int) -> float:
    """A DPO step through LoRA adapters: the policy's forward and the backward to the
    activations (no weight gradients of the frozen base: one forward's worth), and the
    reference forward; the adapters' own FLOPs are negligible and not counted."""
    return 3.0 * forward_flops(config, 2 * pairs, length)


def sampling_flops(config, rows: int, length: int) -> float:
    """Sampling to `length` tokens (prompt + new) with a KV cache: one forward over them."""
    return forward_flops(config, rows, length)


def grpo_iteration_flops(config, rows: int, length: int) -> float:
    """Sampling `rows` completions, their reference forward, one trained pass over them (one
    update per generation: the old policy's log-probs are the current ones)."""
    return sampling_flops(config, rows, length) + 4.0 * forward_flops(config, rows, length)


def matmul_flops(n: int) -> float:
    return 2.0 * n**3


def jax_matmul_cases(dtype: str = "float32") -> dict:
    """{case name: blocking call} of one n x n x n matmul per size, in JAX, of `dtype`
    ('bfloat16': the framework 'JAX bf16')."""
    import jax
    import jax.numpy as jnp

    framework = "JAX" if dtype == "float32" else "JAX bf16"
    cases = {}
    for n in PEAK_SIZES:
        a = jnp.asarray(np.random.default_rng(n).standard_normal((n, n)), dtype)
        product = jax.jit(lambda x, y: x @ y)
        name = PEAK_CASE.format(n=n, framework=framework)
        cases[name] = lambda product=product, a=a: jax.block_until_ready(product(a, a))
    return cases


def torch_matmul_cases() -> dict:
    """The same matmuls in torch ({} when torch is missing)."""
    try:
        import torch
    except ImportError:
        return {}
    cases = {}
    for n in PEAK_SIZES:
        a = torch.from_numpy(np.random.default_rng(n).standard_normal((n, n)).astype(np.float32))
        name = PEAK_CASE.format(n=n, framework="torch")
        cases[name] = lambda a=a: torch.mm(a, a)
    return cases


def peak_cases(frameworks) -> dict:
    """The matmul cases of each framework named in `frameworks` ('JAX', 'JAX bf16', 'torch')."""
    builders = {
        "JAX": jax_matmul_cases,
        "JAX bf16": lambda: jax_matmul_cases("bfloat16"),
        "torch": torch_matmul_cases,
    }
    return {name: fn for f in dict.fromkeys(frameworks) for name, fn in builders[f]().items()}


def peaks(timings: dict) -> dict[str, float]:
    """{framework: best matmul FLOP/s} from the timed peak cases (medians) in `timings`."""
    best = {}
    for framework in ("JAX", "JAX bf16", "torch"):
        rates = [
            matmul_flops(n) / timings[name].median
            for n in PEAK_SIZES
            if (name := PEAK_CASE.format(n=n, framework=framework)) in timings
        ]
        if rates:
            best[framework] = max(rates)
    return best


def is_peak_case(name: str) -> bool:
    return name.startswith("matmul ")
