"""Random-init Qwen3-architecture models that tinygpt creates offline (`tinygpt init-model`).

A preset is a shape for mlx-lm's own `qwen3` model; weights are random (seeded), the tokenizer is either a
small BPE trained here or the real Qwen vocabulary (see vocab.py). The model directory is a normal mlx-lm /
Hugging Face layout (config.json, model.safetensors, tokenizer files), so everything that loads a model
loads these too. Written to a temp dir and renamed: a failure never leaves a half model or overwrites one.
Safety rule: `init_model` writes only a new or empty directory, and with `force` replaces only a directory that
carries its own MARKER; never a symlink, `""`, `.`, `~`, the current directory or one of its ancestors.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PRESETS: dict[str, dict] = {
    # For tests: ~0.1M parameters plus the embedding.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=192, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),
    # A few million parameters: fast on 2 cores, big enough to learn the embedded world.
    "small": dict(hidden_size=256, num_hidden_layers=4, intermediate_size=768, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64),
    "qwen3-0.6b": dict(hidden_size=1024, num_hidden_layers=28, intermediate_size=3072, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128),
    "qwen3-4b": dict(hidden_size=2560, num_hidden_layers=36, intermediate_size=9728, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128),
}
VOCABS = ("bpe", "qwen")
DTYPES = ("float32", "bfloat16", "float16")


MARKER = "tinygpt.json"  # written by init_model; its `created_by` marks a directory tinygpt made


class InitModelError(RuntimeError):
    """The model could not be created; the message says why and what to do."""


def model_marker(path: str | Path) -> dict | None:
    """The metadata `init_model` wrote into `path`, or None if tinygpt did not create it as a model."""
    try:
        meta = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("created_by") == "tinygpt init-model" else None


def is_random_init(path: str | Path) -> bool:
    """True if `path` is a model tinygpt created with random weights and nothing has trained it since."""
    meta = model_marker(path)
    return meta is not None and not meta.get("trained_by")


@dataclass(frozen=True)
class InitSpec:
    """What `init_model` builds."""

    preset: str = "tiny"
    vocab: str = "bpe"
    dtype: str = "float32"
    seed: int = 0
    max_position_embeddings: int = 40960


def _config(spec: InitSpec, tok) -> dict:
    shape = PRESETS[spec.preset]
    real = spec.vocab == "qwen"
    from tinygpt.runtime.vocab import QWEN_VOCAB_SIZE

    vocab_size = QWEN_VOCAB_SIZE if real else tok.get_vocab_size()
    return dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=vocab_size,
        rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.preset in ("tiny", "small", "qwen3-0.6b", "qwen3-4b"),
        torch_dtype=spec.dtype, bos_token_id=None,
        eos_token_id=[tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")],
        **shape,
    )


def check_target(out_dir: str | Path, force: bool = False) -> Path:
    """The path `init_model` may write, or InitModelError saying why not (see the module's safety rule)."""
    if not str(out_dir).strip():
        raise InitModelError("the model directory is empty (''); name a new directory, e.g. models/tiny")
    out = Path(out_dir).expanduser()
    where = out.parent.resolve() / out.name if out.name not in ("", ".", "..") else out.resolve()
    cwd = Path.cwd().resolve()
    if where in {cwd, *cwd.parents, Path.home().resolve()}:
        raise InitModelError(f"refusing to create a model in {str(out_dir)!r}: it is the current directory, one of "
                             "its parents or your home directory; name a new subdirectory such as models/tiny")
    if out.is_symlink():
        raise InitModelError(f"{out} is a symbolic link; tinygpt does not replace links or write through them. "
                             "Name a new directory instead")
    if not out.exists():
        above = out.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise InitModelError(f"cannot create {out}: {above} is a file, not a directory; name another place")
        return out
    if not out.is_dir():
        raise InitModelError(f"{out} exists and is not a directory; name a new directory")
    if not any(out.iterdir()):
        return out
    if model_marker(out) is None:
        raise InitModelError(f"{out} exists and is not empty, and `tinygpt init-model` did not create it (no "
                             f"{MARKER}): tinygpt never replaces it, even with --force. Name a new directory")
    if not force:
        raise InitModelError(f"{out} already holds a tinygpt model; pass --force to replace it")
    return out


def init_model(out_dir: str | Path, spec: InitSpec = InitSpec(), force: bool = False,
               progress: Callable[[str], None] | None = None) -> Path:
    """Create a random-init Qwen3 model directory at `out_dir`; refuses to overwrite unless `force`.

    `progress`, if given, is called with a short description as each step starts (STEPS in all)."""
    step = progress or (lambda _msg: None)
    if spec.preset not in PRESETS:
        raise InitModelError(f"unknown preset {spec.preset!r}; choose one of {', '.join(PRESETS)}")
    if spec.vocab not in VOCABS:
        raise InitModelError(f"unknown vocab {spec.vocab!r}; choose 'bpe' (small, trained here) or 'qwen' (real)")
    if spec.dtype not in DTYPES:
        raise InitModelError(f"unknown dtype {spec.dtype!r}; choose one of {', '.join(DTYPES)}")
    out = check_target(out_dir, force)
    step("loading MLX")
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.models import qwen3
    from mlx_lm.utils import save_model

    from tinygpt.runtime import vocab

    step(f"building the {spec.vocab} tokenizer")
    tok = vocab.qwen_tokenizer() if spec.vocab == "qwen" else vocab.small_bpe_tokenizer()
    config = _config(spec, tok)
    step(f"initialising {spec.preset} weights (seed {spec.seed}, {spec.dtype})")
    mx.random.seed(spec.seed)
    model = qwen3.Model(qwen3.ModelArgs.from_dict(config))
    dtype = getattr(mx, spec.dtype)
    model.update(tree_map(lambda w: w.astype(dtype), model.parameters()))
    mx.eval(model.parameters())
    step(f"writing {out}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise InitModelError(f"cannot create {out}: {exc.strerror or exc} ({exc.filename or out.parent}); "
                             "choose a writable directory") from exc
    try:
        save_model(tmp, model)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        vocab.save_tokenizer(tok, tmp, model_max_length=spec.max_position_embeddings)
        meta = dict(created_by="tinygpt init-model", preset=spec.preset, vocab=spec.vocab, dtype=spec.dtype,
                    seed=spec.seed, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        (tmp / MARKER).write_text(json.dumps(meta, indent=2))
        _swap_in(tmp, check_target(out_dir, force))  # re-checked: the target may have changed meanwhile
    except OSError as exc:
        raise InitModelError(f"cannot write the model to {out}: {exc.strerror or exc}"
                             f"{f' ({exc.filename})' if exc.filename else ''}; free space or choose another "
                             "directory") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


STEPS = 4  # the number of `progress` calls init_model makes


def _swap_in(new: Path, out: Path) -> None:
    """Move `new` to `out`; a replaced (tinygpt-made) `out` is moved aside first and deleted only afterwards."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(new, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, trash / "model")
    try:
        os.replace(new, out)
    except BaseException:  # Ctrl-C included: put the old model back before anything is deleted
        os.replace(trash / "model", out)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
