"""Random-init models that tinygpt creates offline (`tinygpt init-model`).

A preset is a shape for one of mlx-lm's own models; weights are random (seeded). The vocabulary picks the
family: a small BPE trained here or the real Qwen vocabulary (mlx-lm's `qwen3`), Llama 3's (`llama`) or
Mistral Nemo's (`mistral`), each with its family's special tokens and chat template (see vocab.py), so a tiny
model writes tool calls in its family's format. The model directory is a normal mlx-lm /
Hugging Face layout (config.json, model.safetensors, tokenizer files), so everything that loads a model
loads these too. Written to a temp dir and renamed: a failure never leaves a half model or overwrites one.
Safety rule: `init_model` writes only a new or empty directory, and with `force` replaces only a directory that
carries its own MARKER; never a symlink, `""`, `.`, `~`, the current directory or one of its ancestors.
`init_adapter` makes a random-init LoRA/DoRA adapter for a base in mlx-lm's adapter format under the same rules
(its MARKER says kind "adapter"); it does not train anything.
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
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
VOCABS = ("bpe", "qwen", "llama3", "mistral")
# per vocabulary: mlx-lm model type, embedding rows (None: the tokenizer's size), rope theta
MLX_MODULES = {"qwen3": "qwen3", "llama": "llama", "mistral": "llama"}  # mlx-lm loads "mistral" as llama
ARCHITECTURES = {"bpe": ("qwen3", None, 1_000_000.0), "qwen": ("qwen3", 151936, 1_000_000.0),
                 "llama3": ("llama", 128256, 500_000.0), "mistral": ("mistral", 131072, 1_000_000.0)}
DTYPES = ("float32", "bfloat16", "float16")


MARKER = "tinygpt.json"  # written by init_model; its `created_by` marks a directory tinygpt made
ADAPTER_CREATOR = "tinygpt init-adapter"  # `created_by` in the MARKER of an adapter directory init_adapter made


class InitModelError(RuntimeError):
    """The model could not be created; the message says why and what to do."""


def model_marker(path: str | Path) -> dict | None:
    """The metadata `init_model` wrote into `path`, or None if tinygpt did not create it as a model."""
    try:
        meta = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("created_by") == "tinygpt init-model" else None


def adapter_marker(path: str | Path) -> dict | None:
    """The metadata `init_adapter` wrote into `path`, or None if tinygpt did not create it as an adapter."""
    try:
        meta = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("created_by") == ADAPTER_CREATOR else None


def is_random_init(path: str | Path) -> bool:
    """True if `path` is a model or adapter tinygpt created with random weights and nothing has trained it since."""
    meta = model_marker(path) or adapter_marker(path)
    return meta is not None and not meta.get("trained_by")


def is_untrained(loaded) -> bool:
    """True if a loaded model (a base, or a specialist = base + adapter) has only random weights: its base is
    random-init and so is its adapter, if any. A trained adapter on a random base is a trained specialist."""
    adapter = getattr(loaded, "adapter_path", None)
    return is_random_init(loaded.path) and (adapter is None or is_random_init(adapter))


@dataclass(frozen=True)
class InitSpec:
    """What `init_model` builds."""

    preset: str = "tiny"
    vocab: str = "bpe"
    dtype: str = "float32"
    seed: int = 0
    max_position_embeddings: int = 40960


def _config(spec: InitSpec, tok) -> dict:
    from tinygpt.runtime.tool_formats import get
    from tinygpt.runtime.vocab import FAMILIES

    shape = PRESETS[spec.preset]
    model_type, rows, theta = ARCHITECTURES[spec.vocab]
    family = FAMILIES[spec.vocab]
    # EOS: the end-of-turn tokens of the family's template (its tool format names them), e.g. <|im_end|> first
    eos = [tok.token_to_id(t) for t in get(family.tool_format).stop_tokens if tok.token_to_id(t) is not None]
    arch = {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}[model_type]
    return dict(
        architectures=[arch], model_type=model_type, vocab_size=rows or tok.get_vocab_size(),
        rms_norm_eps=1e-6 if model_type == "qwen3" else 1e-5, rope_theta=theta,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.preset in ("tiny", "small", "qwen3-0.6b", "qwen3-4b"),
        torch_dtype=spec.dtype, bos_token_id=tok.token_to_id(family.bos) if family.bos else None,
        eos_token_id=eos, **shape,
    )


def check_target(out_dir: str | Path, force: bool = False, *, kind: str = "model") -> Path:
    """The path `init_model` (or, with kind="adapter", `init_adapter`) may write, or InitModelError saying why not.

    See the module's safety rule; a non-empty directory is replaced only with `force` and only if it carries
    the MARKER of the same kind."""
    if not str(out_dir).strip():
        raise InitModelError(f"the {kind} directory is empty (''); name a new directory, e.g. {kind}s/tiny")
    out = Path(out_dir).expanduser()
    where = out.parent.resolve() / out.name if out.name not in ("", ".", "..") else out.resolve()
    cwd = Path.cwd().resolve()
    if where in {cwd, *cwd.parents, Path.home().resolve()}:
        raise InitModelError(f"refusing to create a {kind} in {str(out_dir)!r}: it is the current directory, one of "
                             f"its parents or your home directory; name a new subdirectory such as {kind}s/tiny")
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
    ours = model_marker(out) if kind == "model" else adapter_marker(out)
    if ours is None:
        maker = "tinygpt init-model" if kind == "model" else ADAPTER_CREATOR
        raise InitModelError(f"{out} exists and is not empty, and `{maker}` did not create it (no "
                             f"{MARKER}): tinygpt never replaces it, even with --force. Name a new directory")
    if not force:
        raise InitModelError(f"{out} already holds a tinygpt {kind}; pass --force to replace it")
    foreign = _files_not_written_by_tinygpt(out, ours)
    if foreign:
        raise InitModelError(f"{out} holds files tinygpt did not write ({', '.join(foreign[:5])}"
                             f"{', ...' if len(foreign) > 5 else ''}); --force never deletes them. Move them out "
                             "or name a new directory")
    return out


# What init_model / init_adapter write, for markers from before they listed their files
_KNOWN_FILES = {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "chat_template.jinja", "generation_config.json", "model.safetensors.index.json",
                "adapters.safetensors", "adapter_config.json", MARKER}


def _files_not_written_by_tinygpt(out: Path, meta: dict) -> list[str]:
    listed = set(meta.get("files") or ())
    return sorted(p.name for p in out.iterdir() if p.name not in listed and not (
        not listed and (p.name in _KNOWN_FILES or (p.name.startswith("model") and p.name.endswith(".safetensors")))))


def init_model(out_dir: str | Path, spec: InitSpec = InitSpec(), force: bool = False,
               progress: Callable[[str], None] | None = None) -> Path:
    """Create a random-init model directory at `out_dir` (architecture by vocabulary, see ARCHITECTURES);
    refuses to overwrite unless `force`.

    `progress`, if given, is called with a short description as each step starts (STEPS in all)."""
    step = progress or (lambda _msg: None)
    if spec.preset not in PRESETS:
        raise InitModelError(f"unknown preset {spec.preset!r}; choose one of {', '.join(PRESETS)}")
    if spec.vocab not in VOCABS:
        raise InitModelError(f"unknown vocab {spec.vocab!r}; choose 'bpe' (small, trained here) or a real one: "
                             "'qwen', 'llama3', 'mistral'")
    if spec.dtype not in DTYPES:
        raise InitModelError(f"unknown dtype {spec.dtype!r}; choose one of {', '.join(DTYPES)}")
    out = check_target(out_dir, force)
    step("loading MLX")
    import mlx.core  # noqa: F401  (the step the user sees: MLX loads here)

    from tinygpt.runtime import vocab

    step(f"building the {spec.vocab} tokenizer")
    tok = vocab.tokenizer_for(spec.vocab)
    config = _config(spec, tok)
    template = vocab.chat_template(spec.vocab)  # fetched with the vocabulary, before any weights are made
    step(f"initialising {spec.preset} weights (seed {spec.seed}, {spec.dtype})")
    model = random_model(config, spec.seed, spec.dtype)
    step(f"writing {out}")
    meta = dict(created_by="tinygpt init-model", preset=spec.preset, vocab=spec.vocab, dtype=spec.dtype,
                seed=spec.seed, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def write(tmp: Path) -> None:
        save_model_files(tmp, model, config)
        vocab.save_tokenizer(tok, tmp, model_max_length=spec.max_position_embeddings, vocab=spec.vocab,
                             template=template)

    return _write_marked(out_dir, force, "model", write, meta)


def random_model(config: dict, seed: int, dtype: str = "float32"):
    """The mlx-lm model of `config` (mlx-lm's module for its model_type) with random weights drawn from `seed`,
    cast to `dtype`. Weights come out as mlx-lm's own initialisers draw them."""
    import mlx.core as mx
    from mlx.utils import tree_map

    mx.random.seed(seed)
    module = importlib.import_module(f"mlx_lm.models.{MLX_MODULES[config['model_type']]}")
    model = module.Model(module.ModelArgs.from_dict(config))
    model.update(tree_map(lambda w: w.astype(getattr(mx, dtype)), model.parameters()))
    mx.eval(model.parameters())
    return model


def save_model_files(directory: Path, model, config: dict) -> None:
    """The weights (mlx-lm's save_model: safetensors + index) and config.json into an existing `directory`."""
    import transformers
    from mlx_lm.utils import save_model

    save_model(directory, model)
    # the version that writes the tokenizer files; transformers reads it to know they need no regex repair
    (directory / "config.json").write_text(json.dumps({**config, "transformers_version": transformers.__version__},
                                                      indent=2, sort_keys=True))


def _write_marked(out_dir, force: bool, kind: str, write: Callable[[Path], None], meta: dict) -> Path:
    """Write a new directory with `write` plus the MARKER (listing its files) in a temp dir beside `out_dir`,
    then swap it in; a failure leaves the old directory (if any) and no temp dir."""
    out = Path(out_dir).expanduser()
    # named before it exists and created inside the try: a Ctrl-C that lands while it is being made (right after
    # the "writing" step is reported) still finds it in `finally` (mkdtemp could be interrupted after its mkdir)
    tmp, foreign = out.parent / f".{out.name}.{secrets.token_hex(6)}", True
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            foreign = False  # from here an existing `tmp` is the one made below (unless mkdir says it was there)
            tmp.mkdir(mode=0o700)  # exclusive: a directory already of that name is never taken (nor removed)
        except OSError as exc:
            foreign = foreign or isinstance(exc, FileExistsError) and exc.filename == str(tmp)
            raise InitModelError(f"cannot create {out}: {exc.strerror or exc} ({exc.filename or out.parent}); "
                                 "choose a writable directory") from exc
        write(tmp)
        meta = {**meta, "files": sorted({p.name for p in tmp.iterdir()} | {MARKER})}  # what --force may replace
        (tmp / MARKER).write_text(json.dumps(meta, indent=2))
        _swap_in(tmp, check_target(out_dir, force, kind=kind))  # re-checked: the target may have changed meanwhile
    except OSError as exc:
        raise InitModelError(f"cannot write the {kind} to {out}: {exc.strerror or exc}"
                             f"{f' ({exc.filename})' if exc.filename else ''}; free space or choose another "
                             "directory") from exc
    finally:
        if not foreign and tmp.exists():
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


FINE_TUNE_TYPES = ("lora", "dora")
ADAPTER_FILES = ("adapters.safetensors", "adapter_config.json")  # mlx-lm's adapter format


def init_adapter(base_dir: str | Path, out_dir: str | Path, *, rank: int = 8, num_layers: int = -1,
                 fine_tune_type: str = "lora", seed: int = 0, scale: float = 20.0,
                 keys: list[str] | None = None, force: bool = False) -> Path:
    """Create a random-init adapter for the model at `base_dir` in mlx-lm's format at `out_dir`.

    The files are what mlx-lm's tuner writes and `mlx_lm.tuner.utils.load_adapters` reads: adapter_config.json
    (fine_tune_type, num_layers, lora_parameters{rank, dropout, scale, keys}) and adapters.safetensors (lora_a,
    lora_b and, for DoRA, m per adapted Linear). `num_layers=-1` adapts every layer, k > 0 the last k; `keys`
    (e.g. ["self_attn.q_proj"]) limits which Linears, None means every Linear in a layer, as in mlx-lm.
    A is drawn as mlx-lm draws it, U(+-1/sqrt(in)); unlike mlx-lm, B is random too, N(0, (0.1/(scale*sqrt(rank)))^2),
    so the adapter changes outputs (by roughly a tenth of a layer's output) instead of being a no-op.
    DoRA's m is the base weight's row norms, as mlx-lm initialises it."""
    base = Path(base_dir).expanduser()
    if fine_tune_type not in FINE_TUNE_TYPES:
        raise InitModelError(f"unknown fine_tune_type {fine_tune_type!r}; choose one of {', '.join(FINE_TUNE_TYPES)}")
    if not isinstance(rank, int) or rank < 1:
        raise InitModelError(f"rank must be a positive integer, got {rank!r}")
    if not (base / "config.json").is_file():
        raise InitModelError(f"{base} is not a model directory (no config.json); name the base model's directory")
    out = check_target(out_dir, force, kind="adapter")
    import mlx.core as mx
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load_model

    from tinygpt.runtime.models import fingerprint

    model, _config = load_model(base, lazy=True)
    depth = len(model.layers)
    if num_layers != -1 and not (isinstance(num_layers, int) and 1 <= num_layers <= depth):
        raise InitModelError(f"num_layers must be -1 (all) or 1..{depth} for this base, got {num_layers!r}")
    lora_parameters = dict(rank=rank, dropout=0.0, scale=float(scale))
    if keys is not None:
        lora_parameters["keys"] = list(keys)
    linear_to_lora_layers(model, num_layers, lora_parameters, use_dora=fine_tune_type == "dora")
    weights = _random_adapter_weights(model, rank, float(scale), seed)
    if not weights:
        raise InitModelError(f"keys {keys!r} name no Linear layer of this base; use names such as "
                             "'self_attn.q_proj' or 'mlp.down_proj', or leave keys out for all of them")
    config = dict(model=str(base.resolve()), fine_tune_type=fine_tune_type, num_layers=num_layers,
                  lora_parameters=lora_parameters, seed=seed)
    meta = dict(created_by=ADAPTER_CREATOR, kind="adapter", base=str(base.resolve()),
                base_fingerprint=fingerprint(base), fine_tune_type=fine_tune_type, rank=rank,
                num_layers=num_layers, scale=float(scale), seed=seed,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    def write(tmp: Path) -> None:
        mx.save_safetensors(str(tmp / "adapters.safetensors"), weights)
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=4, sort_keys=True))

    return _write_marked(out_dir, force, "adapter", write, meta)


def _random_adapter_weights(model, rank: int, scale: float, seed: int) -> dict:
    """Seeded lora_a / lora_b (and DoRA m, as computed from the base) for every adapted layer, by flat name."""
    import math

    import mlx.core as mx
    from mlx.utils import tree_flatten

    params = dict(tree_flatten(model.parameters()))
    key = mx.random.key(seed)  # one key per tensor, split from the seed: the same seed gives the same adapter
    b_std = 0.1 / (scale * math.sqrt(rank))
    names = sorted(n for n in params if n.rsplit(".", 1)[-1] in ("lora_a", "lora_b", "m"))
    out = {}
    for name, k in zip(names, mx.random.split(key, max(len(names), 1))):
        leaf, shape = name.rsplit(".", 1)[-1], params[name].shape
        if leaf == "lora_a":
            bound = 1 / math.sqrt(shape[0])
            out[name] = mx.random.uniform(-bound, bound, shape, key=k)
        elif leaf == "lora_b":
            out[name] = b_std * mx.random.normal(shape, key=k)
        else:
            out[name] = params[name].astype(mx.float32)
    mx.eval(out)
    return out
