"""Model + mesh presets shared by every experiment config: alignax/models/presets.py (also
`--model=<preset>` on any experiment's command line).

    python -m configs.models      # each preset's parameter count (LM head)
"""

import ml_collections

from alignax.models.presets import PRESETS, mesh_config, model_config

__all__ = ["PRESETS", "get_config", "mesh_config", "model_config"]


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config(arg)
    config.mesh = mesh_config(arg)
    config.lock()
    return config


if __name__ == "__main__":
    from alignax.models import ModelConfig

    for name in PRESETS:
        print(f"{name:12s} {ModelConfig.from_config(model_config(name)).num_params() / 1e6:8.2f}M")
