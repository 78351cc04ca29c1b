"""alignax.optim: the schedule is checked by name, and ensemble members are clipped alone."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignax import optim


def test_unknown_schedule_is_named():
    from ml_collections import ConfigDict

    config = ConfigDict({"optimizer": optim.default_optimizer_config(), "train": {"steps": 10}})
    config.optimizer.schedule = "linear"
    with pytest.raises(ValueError, match=r"optimizer\.schedule"):
        optim.make_optimizer(config)


def test_clip_by_member_norm_clips_each_member_alone():
    """Member 0 has norm 5 (clipped to 1), member 1 norm 0.5 (untouched)."""
    updates = {"a": jnp.array([[3.0], [0.3]]), "b": jnp.array([[4.0, 0.0], [0.4, 0.0]])}
    clipped, _ = optim.clip_by_member_norm(1.0).update(updates, optax.EmptyState())
    np.testing.assert_allclose(clipped["a"][:, 0], [0.6, 0.3], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"][:, 0], [0.8, 0.4], rtol=1e-6)
