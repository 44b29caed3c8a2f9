"""What the server says about its model: names, sizes, context length, template, capabilities.

Computed once from the `LoadedModel` when the scheduler first loads it (in its thread, since counting
parameters touches MLX arrays) and then read by any request thread. Not here: loading (runtime/models.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinygpt.runtime.models import LoadedModel
from tinygpt.runtime.presets import is_untrained


@dataclass(frozen=True)
class ModelCard:
    name: str                  # what clients call it (the directory name unless --model-name)
    path: Path
    tokenizer: Any             # mlx-lm TokenizerWrapper; thread-safe for encode/apply_chat_template
    config: dict
    fingerprint: str
    vocab_size: int
    context_length: int
    parameter_count: int
    size_bytes: int
    family: str
    quantization: str
    chat_template: str
    eos_token_ids: tuple[int, ...]
    created: int               # unix seconds (model directory mtime)
    random_init: bool = False  # made by `tinygpt init-model` and never trained: its output is noise
    adapter_path: Path | None = None  # a specialist's adapter directory (its base is `path`)

    @property
    def ollama_name(self) -> str:
        """The name with a tag, as Ollama lists models ('name:latest')."""
        return self.name if ":" in self.name else f"{self.name}:latest"

    @property
    def parameter_size(self) -> str:
        n = self.parameter_count
        for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= scale:
                return f"{n / scale:.1f}{unit}"
        return str(n)

    @property
    def modified_iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))


def describe(loaded: LoadedModel, name: str | None = None) -> ModelCard:
    """The card of a freshly loaded model."""
    from mlx.utils import tree_flatten

    config = loaded.config
    params = sum(int(v.size) for _, v in tree_flatten(loaded.model.parameters()))
    files = list(loaded.path.glob("*.safetensors"))
    quant = config.get("quantization") or {}
    dtype = str(config.get("torch_dtype") or "float32")
    quantization = f"Q{quant['bits']}" if "bits" in quant else {"bfloat16": "BF16", "float16": "F16"}.get(dtype, "F32")
    ctx = config.get("max_position_embeddings") or config.get("text_config", {}).get("max_position_embeddings")
    return ModelCard(
        name=name or loaded.name, path=loaded.path, tokenizer=loaded.tokenizer, config=config,
        fingerprint=loaded.fingerprint, vocab_size=loaded.vocab_size, context_length=int(ctx or 4096),
        parameter_count=params, size_bytes=sum(f.stat().st_size for f in files),
        family=str(config.get("model_type", "unknown")), quantization=quantization,
        chat_template=str(getattr(loaded.tokenizer, "chat_template", None) or ""),
        eos_token_ids=tuple(sorted(loaded.tokenizer.eos_token_ids)),
        created=int(loaded.path.stat().st_mtime), random_init=is_untrained(loaded), adapter_path=loaded.adapter_path,
    )
