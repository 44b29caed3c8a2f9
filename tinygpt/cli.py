"""`tinygpt <command>`: the one entry point. Maps command names to modules with `main(argv) -> int`.

Commands import lazily so `tinygpt --help` is instant. User errors (bad paths, bad input, mismatched caches)
raised by any package print one clear line and exit 2; only bugs give a traceback. Exit codes are decided here.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "quickstart": ("tinygpt.cli_quickstart", "run the whole pipeline on the embedded default model and tool world"),
    "doctor": ("tinygpt.cli_doctor", "report MLX version, device, BLAS in use and a measured matmul GFLOP/s"),
    "init-model": ("tinygpt.cli_init_model", "create a random-init Qwen3-architecture model offline"),
    "generate": ("tinygpt.cli_generate", "generate text from a prompt (one shot)"),
    "chat": ("tinygpt.cli_chat", "chat REPL on one persistent KV session (/save /load /reset)"),
    "agent": ("tinygpt.cli_agent", "agent REPL with grammar-constrained tool calls in a sandbox"),
    "serve": ("tinygpt.cli_serve", "OpenAI- and Ollama-compatible HTTP server"),
    "traces": ("tinygpt.cli_traces:traces_main", "list, show and summarise .atraj trajectories"),
    "traces-to-data": ("tinygpt.cli_traces:traces_to_data_main", "turn trajectories into training rows"),
}

HELP = "usage: tinygpt <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<16}{desc}" for name, (_, desc) in COMMANDS.items()
) + "\n\nRun `tinygpt <command> --help` for each command's options and examples.\n"


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user asked for something wrong', printed without a traceback."""
    from tinygpt.config import ConfigError
    from tinygpt.runtime.kv_cache import KVCacheError
    from tinygpt.runtime.models import ModelLoadError
    from tinygpt.runtime.presets import InitModelError
    from tinygpt.runtime.vocab import VocabError
    from tinygpt.tools.catalog import ToolsetSpecError

    return (ConfigError, KVCacheError, ModelLoadError, InitModelError, VocabError, ToolsetSpecError,
            FileNotFoundError,
            IsADirectoryError, NotADirectoryError, PermissionError)


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
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            sys.stderr.write(f"tinygpt: the {name!r} command is not available in this build\n")
            return 2
        raise
    try:
        return int(getattr(module, func or "main")(rest) or 0)
    except user_errors() as exc:
        sys.stderr.write(f"tinygpt {name}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
