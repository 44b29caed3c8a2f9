"""What is trained: mlx-lm's LoRA / DoRA layers on the last N layers, or the weights of those layers (full), and
the adapter directory that holds the result in mlx-lm's format.

`prepare` freezes the model and then either wraps Linears with `mlx_lm.tuner.utils.linear_to_lora_layers` or
unfreezes whole layers, as `mlx_lm.lora` does; `adapter_config` is mlx-lm's adapter_config.json. `write_adapter`
writes adapters.safetensors (the trainable parameters, by their flat names) + adapter_config.json, which
`mlx_lm.generate --adapter-path`, `mlx_lm.tuner.utils.load_adapters` and tinygpt's model store all load.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from tinygpt.trainer.config import TrainConfig
from tinygpt.trainer.errors import TrainError

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def prepare(model, cfg: TrainConfig, base: str) -> dict:
    """Make `model` trainable as `cfg` says; return its adapter_config.json content."""
    depth = len(model.layers)
    if cfg.num_layers > depth:
        raise TrainError(f"--num-layers {cfg.num_layers}: the model has only {depth} layers (-1 adapts all, N the "
                         "last N)")
    model.freeze()
    config = {"model": base, "fine_tune_type": cfg.method, "num_layers": cfg.num_layers}
    if cfg.method == "full":
        for layer in model.layers[-max(cfg.num_layers, 0):]:
            if not cfg.keys:
                layer.unfreeze()
            for name, module in layer.named_modules() if cfg.keys else ():
                if name in cfg.keys:
                    module.unfreeze()
        config["lora_parameters"] = None
        config["keys"] = list(cfg.keys) or None
    else:
        from mlx_lm.tuner.utils import linear_to_lora_layers

        params = {"rank": cfg.rank, "dropout": cfg.dropout, "scale": cfg.scale}
        if cfg.keys:
            params["keys"] = list(cfg.keys)
        try:
            linear_to_lora_layers(model, cfg.num_layers, params, use_dora=cfg.method == "dora")
        except ValueError as exc:  # a key names a layer type mlx-lm cannot adapt
            raise TrainError(f"--keys: {exc}") from None
        config["lora_parameters"] = params
    if not tree_flatten(model.trainable_parameters()):
        raise TrainError(f"--keys {','.join(cfg.keys)} name no module of the adapted layers; use names such as "
                         "self_attn.q_proj or mlp.down_proj, or leave --keys out for every Linear")
    return config


def trainable_weights(model) -> dict[str, mx.array]:
    return dict(tree_flatten(model.trainable_parameters()))


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = sum(v.size for _, v in tree_flatten(model.parameters()))
    return trainable, total


def write_adapter(directory: Path, model, config: dict) -> None:
    """adapters.safetensors + adapter_config.json into an existing `directory` (the caller makes it atomic)."""
    mx.save_safetensors(str(directory / ADAPTER_WEIGHTS), trainable_weights(model), metadata={"format": "mlx"})
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=4, sort_keys=True) + "\n")
