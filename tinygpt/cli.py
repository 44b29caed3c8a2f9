"""`tinygpt <command>`: the one entry point. Maps command names to modules with `main(argv) -> int`.

Commands import lazily so `tinygpt --help` is instant. User errors (bad paths, bad input, mismatched caches)
raised by any package print one clear line and exit 2; so do OS errors about places (read-only, full disk,
no permission, not a directory), naming the path. Ctrl-C prints "interrupted" and exits 130, also when the
interrupt surfaced as another error during clean-up; a closed output pipe exits 141 quietly. Only bugs give a
traceback. Exit codes are decided here.
"""
from __future__ import annotations

import errno
import importlib
import os
import sys

COMMANDS = {
    "quickstart": ("tinygpt.cli_quickstart", "run the whole pipeline on the embedded default model and tool world"),
    "doctor": ("tinygpt.cli_doctor", "report MLX version, device, BLAS in use and a measured matmul GFLOP/s"),
    "init-model": ("tinygpt.cli_init_model", "create a random-init Qwen3-architecture model offline"),
    "generate": ("tinygpt.cli_generate", "generate text from a prompt (one shot)"),
    "chat": ("tinygpt.cli_chat", "chat REPL on one persistent KV session (/save /load /reset)"),
    "agent": ("tinygpt.cli_agent", "agent REPL: tools in a sandbox, a local model (grammar-constrained) or --remote"),
    "models": ("tinygpt.cli_models", "list, show, add, alias, pull and remove models, adapters and specialists"),
    "serve": ("tinygpt.cli_serve", "OpenAI- and Ollama-compatible HTTP server"),
    "traces": ("tinygpt.cli_traces:traces_main", "list, show and summarise .atraj trajectories"),
    "traces-to-data": ("tinygpt.cli_traces:traces_to_data_main", "turn trajectories into training rows"),
    "train": ("tinygpt.cli_train", "fine-tune (LoRA, DoRA, full) on traces, rows or chat data; resume exactly"),
    "train-tokenizer": ("tinygpt.cli_train_tokenizer", "train a byte-level BPE tokenizer with chat and tool tokens"),
    "build-base": ("tinygpt.cli_build_base", "make the tool world's base model: corpus, tokenizer, pretraining, card"),
    "pretrain": ("tinygpt.cli_pretrain", "pretrain a small model from random weights on a text corpus; resume exactly"),
    "distill": ("tinygpt.cli_distill", "distill from a local teacher: top-k logprobs for train, or on-policy"),
    "fuse": ("tinygpt.cli_fuse", "fuse an adapter into its base: a standalone model directory"),
    "eval": ("tinygpt.cli_eval", "run an eval suite on a model, recording every episode and its result row"),
    "eval-gate": ("tinygpt.cli_eval_gate", "ship / routed-ship / reject / inconclusive: a candidate vs a baseline"),
    "retrain": ("tinygpt.cli_retrain", "the factory loop, resumable: rollouts, data, train, eval, gate, register"),
    "eval-router": ("tinygpt.cli_eval_router", "routing accuracy, calibration, escalation and the cost-quality curve"),
    "backends": ("tinygpt.cli_backends", "list remote and cloud backends (backends.toml; off unless enabled)"),
    "route": ("tinygpt.cli_route", "where a request goes (specialist, generalist, remote) and why; train the router"),
}

HELP = "usage: tinygpt <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<16}{desc}" for name, (_, desc) in COMMANDS.items()
) + "\n\nRun `tinygpt <command> --help` for each command's options and examples.\n"


_USER_ERRORS = (
    ("tinygpt.config", "ConfigError"), ("tinygpt.runtime.kv_cache", "KVCacheError"),
    ("tinygpt.runtime.models", "ModelLoadError"), ("tinygpt.runtime.store", "StoreError"),
    ("tinygpt.runtime.presets", "InitModelError"),
    ("tinygpt.runtime.vocab", "VocabError"), ("tinygpt.tools.catalog", "ToolsetSpecError"),
    ("tinygpt.cli_quickstart", "RunDirError"), ("tinygpt.traces.errors", "TraceError"),
    ("tinygpt.trainer.errors", "TrainError"), ("tinygpt.evals.errors", "EvalError"),
    ("tinygpt.router.backends", "BackendError"),
    ("tinygpt.router.errors", "RouterError"),
)
# errno values that describe the user's files or disk, not a bug in tinygpt
_PLACE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR,
                 errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTEMPTY}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user asked for something wrong', printed without a traceback.

    Only from modules already imported: a class whose module never loaded cannot have been raised, and
    importing them here would load MLX on every `--help` (argparse exits through this handler)."""
    return tuple(getattr(sys.modules[m], n) for m, n in _USER_ERRORS if m in sys.modules)


def os_error_line(exc: OSError) -> str:
    """One line for an OSError about a place: what failed and where."""
    where = f": {exc.filename}" if exc.filename is not None else ""
    also = f" -> {exc.filename2}" if getattr(exc, "filename2", None) is not None else ""
    return f"{exc.strerror or exc}{where}{also}"


def interrupted(exc: BaseException | None) -> bool:
    """True if Ctrl-C is this exception or what it was raised while handling (clean-up after an interrupt)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__ or exc.__cause__
    return False


def _run(name: str, entry, rest: list[str]) -> int:
    try:
        return int(entry(rest) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (`tinygpt generate ... | head`): stop quietly, as `yes` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail too
        return 141
    except Exception as exc:
        if interrupted(exc):
            sys.stderr.write("\ninterrupted\n")
            return 130
        if isinstance(exc, user_errors()):
            sys.stderr.write(f"tinygpt {name}: error: {exc}\n")
            return 2
        if isinstance(exc, OSError) and exc.errno in _PLACE_ERRNOS:
            sys.stderr.write(f"tinygpt {name}: error: {os_error_line(exc)}\n")
            return 2
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(HELP)
        return 0
    if argv[0] in ("-V", "--version"):
        from tinygpt import __version__

        print(f"tinygpt {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"tinygpt: unknown command {name!r}\n\n{HELP}")
        return 2
    target = COMMANDS[name][0]
    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            sys.stderr.write(f"tinygpt: the {name!r} command is not available in this build\n")
            return 2
        raise
    return _run(name, getattr(module, func or "main"), rest)


if __name__ == "__main__":
    sys.exit(main())
