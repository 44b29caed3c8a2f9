"""`tinygpt traces ls|show|stats` and `tinygpt traces-to-data`: the command-line face of `tinygpt.traces`.

`traces_main(argv)` and `traces_to_data_main(argv)` parse arguments, call the library and render with rich
(or print JSON with `--json`). Bad input exits 2 with a one-line message, Ctrl-C exits 130 ("interrupted"),
never a traceback. Output that is not a terminal gets no colour codes and is never wrapped (full ids and paths,
one row per line). rich and the export machinery are imported only when a command runs, so `--help` is fast.
The work itself (reading, dedupe, export) lives in `tinygpt.traces`; this module only parses, calls and renders.
"""
import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from tinygpt.traces.errors import TraceError
from tinygpt.traces.export_config import ExportConfig

_TRACES_EPILOG = """examples:
  tinygpt traces ls runs/traces                 finished episodes, one per line, with their time
  tinygpt traces ls runs/traces --all --json    include unfinished (.part) ones, as JSON
  tinygpt traces show runs/traces/ep42.atraj    one episode, readable, with its tool calls
  tinygpt traces show 3c7f --dir runs/traces    an episode id, or any unambiguous start of one
  tinygpt traces stats runs/traces              counts, pass rate, tokens
"""
_TO_DATA_EPILOG = """examples:
  tinygpt traces-to-data runs/traces --out data/sft
  tinygpt traces-to-data runs/traces --out data/sft --require-pass --split train \\
      --decontaminate evals/bfcl_tasks.jsonl --threshold 0.85 --json

writes OUT/rows.jsonl    {episode_id, task_id, tokenizer_hash, input_ids, loss_mask} (ids as recorded;
                         loss_mask 1 only on sampled assistant ids), token-exact episodes only
       OUT/chat.jsonl    {episode_id, task_id, messages, tools} in the OpenAI chat format, every kept episode
       OUT/report.json   the counts printed at the end
eval task files are JSON Lines: {"id": ..., "text"|"prompt"|"question": ...} or a JSON string per line.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so mains can return 2 with a clean message."""

    def error(self, message):
        raise TraceError(f"{message} (see {self.prog} --help)")


_NOT_A_TTY_WIDTH = 1_000_000  # "never wrap": rich needs a width; tables and panels take their natural one


def _console(stderr: bool = False):
    """A rich Console: the terminal's width and colours on a tty; otherwise no colour and no wrapping."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, highlight=False, color_system=None, width=_NOT_A_TTY_WIDTH, soft_wrap=True)


def _progress(json_mode: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True, disable=json_mode or not sys.stderr.isatty())


def _print_json(value) -> None:
    import msgspec

    sys.stdout.write(json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False) + "\n")


def _when(created_at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created_at))


def _paths(sources: list[str], include_partial: bool) -> list[Path]:
    from tinygpt.traces.reader import list_traces

    found: dict[str, Path] = {}
    for source in sources:
        for path in list_traces(source, include_partial):
            found[str(path)] = path
    return [found[key] for key in sorted(found)]


def _cmd_ls(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from tinygpt.traces.summary import collect_stats

    stats, summaries = collect_stats(_paths(args.paths, args.all))
    if args.limit:
        summaries = summaries[: args.limit]
    if args.json:
        _print_json({"episodes": summaries, "unreadable": stats.errors})
        return 0
    table = Table("episode", "time", "task", "split", "model", "calls", "tools", "tokens in/out", "reward",
                  "passed", "status", box=None, header_style="bold", pad_edge=False)
    for s in summaries:
        status = s.status + (" [yellow](torn)[/]" if s.torn_bytes else "")
        passed = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[s.passed]
        reward = "-" if s.reward is None else f"{s.reward:g}"
        table.add_row(escape(s.episode_id), _when(s.created_at), escape(s.task_id), escape(s.split),
                      escape(s.model), str(s.calls), str(s.tool_calls),
                      f"{s.prompt_tokens}/{s.output_tokens}" if s.token_exact else "- (no ids)",
                      reward, passed, status)
    console = _console()
    console.print(table)
    console.print(f"{len(summaries)} episode(s); {stats.unreadable} unreadable")
    for error in stats.errors:
        console.print(f"[red]unreadable:[/] {escape(error)}")
    return 0


def _episode_id(path: Path) -> str:
    from tinygpt.traces.reader import FINAL_SUFFIX, PART_SUFFIX

    name = path.name
    return name[: -len(PART_SUFFIX)] if name.endswith(PART_SUFFIX) else name[: -len(FINAL_SUFFIX)]


def _find_episode(name: str, directory: str | None) -> Path:
    """A file path, or the one episode under `directory` whose id is `name` or starts with it."""
    from tinygpt.traces.reader import FINAL_SUFFIX, PART_SUFFIX, list_traces

    path = Path(name)
    if path.is_file():
        return path
    if os.sep in name or name.endswith((FINAL_SUFFIX, PART_SUFFIX)):
        raise TraceError(f"{name} does not exist; pass an .atraj file, or an episode id (or its start) with --dir")
    root = Path(directory or ".")
    if not root.is_dir():
        raise TraceError(f"--dir {root} is not a directory; pass the directory the episodes were recorded in")
    if directory:
        files = list_traces(root, include_partial=True)
    else:  # the current directory only: never walk a whole home directory for an id
        files = sorted(p for p in root.iterdir() if p.name.endswith((FINAL_SUFFIX, PART_SUFFIX)) and p.is_file())
    by_id: dict[str, list[Path]] = {}
    for found in files:
        by_id.setdefault(_episode_id(found), []).append(found)
    matches = [name] if name in by_id else sorted(i for i in by_id if i.startswith(name))
    if not matches:
        raise TraceError(f"no episode id starts with {name!r} under {root}; `tinygpt traces ls {root} --all` "
                         "lists them (or pass --dir)")
    if len(matches) > 1:
        shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
        raise TraceError(f"{name!r} is the start of {len(matches)} episode ids under {root}: {shown}; "
                         "give more of the id")
    files = by_id[matches[0]]
    finished = [f for f in files if f.name.endswith(FINAL_SUFFIX)] or files
    if len(finished) > 1:
        raise TraceError(f"episode {matches[0]!r} is recorded more than once under {root}: "
                         f"{', '.join(map(str, finished))}; pass the file you mean")
    return finished[0]


def _count(ids: list[int] | None) -> str:
    return "no ids" if ids is None else f"{len(ids)} ids"


def _id_lines(show: bool, **named: list[int] | None) -> str:
    """The id lists themselves (for --ids), one dim line each."""
    from rich.markup import escape

    if not show:
        return ""
    return "".join(f"\n[dim]{name} ids: {escape(str(ids))}[/]" for name, ids in named.items() if ids is not None)


def _calls(calls) -> str:
    """Tool calls as rich markup lines: `→ name(arguments)  id`."""
    from rich.markup import escape

    return "".join(f"\n[bold yellow]→ {escape(c.name)}[/]({escape(json.dumps(c.arguments, ensure_ascii=False))})"
                   f"  [dim]{escape(c.id)}[/]" for c in calls)


def _render_event(event, show_ids: bool, expand: bool):
    """One event as a rich Panel (as wide as the terminal when `expand`, else as wide as its text)."""
    from functools import partial

    from rich.markup import escape
    from rich.panel import Panel

    from tinygpt.traces.atraj import Message, ToolResult

    Panel = partial(_panel, Panel, expand)  # noqa: N806
    if isinstance(event, Message):  # an assistant message is history the episode starts from (a loaded chat)
        style = {"system": "magenta", "user": "cyan"}.get(event.role, "white")
        title = f"[{style}]{event.role}[/]" + (" (history)" if event.role == "assistant" else "")
        return Panel(escape(event.content) + _calls(event.tool_calls) + _id_lines(show_ids, message=event.token_ids),
                     title=title, subtitle=_count(event.token_ids))
    if isinstance(event, ToolResult):
        title = f"[yellow]tool {escape(event.name)}[/] ← {escape(event.call_id)}"
        if event.is_error:
            title += " [red](error)[/]"
        if event.truncated:
            title += " (truncated)"
        return Panel(escape(event.content) + _id_lines(show_ids, result=event.token_ids), title=title,
                     subtitle=_count(event.token_ids))
    body = escape(event.content if event.content is not None else event.text) + _calls(event.tool_calls)
    body += _id_lines(show_ids, prompt=event.prompt_token_ids, output=event.output_token_ids)
    facts = [event.finish_reason, f"{event.latency_s * 1000:.0f} ms"]
    if event.token_exact:  # a remote model's turn has messages, no ids to count
        facts[:0] = [f"prompt +{_count(event.prompt_token_ids)}", f"output {_count(event.output_token_ids)}"]
    if event.cached_tokens:
        facts.append(f"{event.cached_tokens} cached")
    if event.logprobs:
        facts.append(f"mean logprob {sum(event.logprobs) / len(event.logprobs):.3f}")
    if not event.token_exact:
        facts.append("[red]not token-exact[/]")
    if event.usage is not None:  # a remote backend's call: who answered, its tokens and cost (docs/backends.md)
        used = event.usage
        facts.append(escape(used.backend) + (f" {used.input_tokens} in / {used.output_tokens} out"
                                             if used.input_tokens is not None else ""))
        facts.append(f"${used.cost_usd:.6f}" if used.cost_usd is not None else "no price")
        if used.attempts > 1:
            facts.append(f"{used.attempts} attempts")
    title = "[green]assistant[/]" + (f" ({escape(event.model)})" if event.model else "")
    return Panel(body, title=title, subtitle=" · ".join(facts))


def _panel(panel, expand: bool, body: str, *, title: str, subtitle: str):
    """A Panel as wide as its text, or as its title or subtitle where those are wider (rich cuts them to the
    text's width otherwise); as wide as the terminal when `expand`."""
    from rich.cells import cell_len
    from rich.text import Text

    text = max((cell_len(line) for line in Text.from_markup(body).plain.split("\n")), default=0) + 4
    frame = min(max(cell_len(Text.from_markup(t).plain) for t in (title, subtitle)) + 6,
                shutil.get_terminal_size().columns)
    width = frame if not expand and frame > text else None  # a fixed width is kept only by an expanding Panel
    return panel(body, title=title, subtitle=subtitle, expand=expand or width is not None, width=width,
                 title_align="left",
                 subtitle_align="right")


def _render_header(episode, expand: bool):
    import msgspec
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    h = episode.header
    rows = [("episode", h.episode_id), ("task", f"{h.task_id} ({h.split})"),
            ("model", f"{h.model}  fingerprint {h.model_fingerprint}  adapter {h.adapter_version or '-'}"),
            ("tokenizer", f"{h.tokenizer_hash or '-'}  template {h.chat_template_hash or '-'}"),
            ("tools", f"{', '.join(t.name for t in h.tools) or '-'}  hash {h.tools_hash or '-'}"),
            ("sampling", json.dumps(msgspec.to_builtins(h.sampling))),
            ("route", json.dumps(msgspec.to_builtins(h.route)) if h.route else "-"), ("file", episode.path)]
    rows.insert(2, ("time", _when(h.created_at)))
    table = Table.grid(padding=(0, 2))
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", escape(str(value)))
    return Panel(table, title=f"[bold].atraj v{h.version}[/]", title_align="left", expand=expand)


def _cmd_show(args) -> int:
    from rich.markup import escape

    from tinygpt.traces.reader import read_episode

    episode = read_episode(_find_episode(args.episode, args.dir))
    if args.json:
        _print_json(episode)
        return 0
    console = _console()
    console.print(_render_header(episode, console.is_terminal))
    for event in episode.events:
        console.print(_render_event(event, args.ids, console.is_terminal))
    if episode.end is None:
        console.print("[yellow]unfinished: no end record[/]")
    else:
        end = episode.end
        verdict = "no checker verdict" if end.verdict is None else (
            f"checker {escape(end.verdict.checker)}: " + ("[green]pass[/]" if end.verdict.passed else "[red]fail[/]")
            + (f" — {escape(end.verdict.details)}" if end.verdict.details else ""))
        console.print(f"[bold]end[/] {escape(end.status)} · reward {end.reward.value:g} "
                      f"({escape(end.reward.source)}{': ' + escape(end.reward.reason) if end.reward.reason else ''})"
                      f" · {verdict}")
    if episode.torn_bytes:
        console.print(f"[yellow]a torn last line ({episode.torn_bytes} bytes) was dropped[/]")
    return 0


def _cmd_stats(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from tinygpt.traces.summary import collect_stats

    paths = _paths(args.paths, args.all)
    with _progress(args.json) as progress:
        task = progress.add_task("reading traces", total=len(paths))
        stats, _ = collect_stats(paths, lambda done, total: progress.update(task, completed=done))
    if args.json:
        _print_json(stats)
        return 0
    table = Table(box=None, show_header=False, pad_edge=False)
    rate = "-" if stats.pass_rate is None else f"{stats.pass_rate:.1%} of {stats.with_verdict} with a verdict"
    reward = "-" if stats.mean_reward is None else f"{stats.mean_reward:.3f}"
    for key, value in [
        ("files", stats.files), ("episodes", f"{stats.episodes} ({stats.complete} finished, {stats.unfinished} "
                                             f"unfinished, {stats.torn} torn, {stats.unreadable} unreadable)"),
        ("pass rate", rate), ("mean reward", reward), ("model calls", stats.calls), ("tool calls", stats.tool_calls),
        ("tokens", f"{stats.prompt_tokens + stats.output_tokens} ({stats.prompt_tokens} prompt, "
                   f"{stats.output_tokens} sampled)"),
        ("not token-exact", stats.not_token_exact),
        ("by model", ", ".join(f"{k}: {v}" for k, v in stats.by_model.items()) or "-"),
        ("by split", ", ".join(f"{k}: {v}" for k, v in stats.by_split.items()) or "-"),
    ]:
        table.add_row(f"[bold]{key}[/]", escape(str(value)))
    console = _console()
    console.print(table)
    for error in stats.errors:
        console.print(f"[red]unreadable:[/] {escape(error)}")
    return 0


def _traces_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinygpt traces", description="List, show and count recorded .atraj episodes.",
                     epilog=_TRACES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{ls,show,stats}", parser_class=_Parser)
    sub.required = True
    for name, help_text in (("ls", "one line per episode"), ("stats", "counts, pass rate, tokens")):
        cmd = sub.add_parser(name, help=help_text, description=help_text, epilog=_TRACES_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_argument("paths", nargs="+", metavar="PATH", help="trace files or directories (searched recursively)")
        cmd.add_argument("--all", action="store_true", help="include unfinished .atraj.part episodes")
        cmd.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "ls":
            cmd.add_argument("--limit", type=int, default=0, help="show at most this many episodes")
    show = sub.add_parser("show", help="one episode, readable", description="Show one episode with its tool calls.",
                          epilog=_TRACES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("episode", help="an .atraj(.part) file, or an episode id or any unambiguous start of one")
    show.add_argument("--dir", help="directory to look the id up in, recursively (default: the current directory, "
                                    "not recursively)")
    show.add_argument("--ids", action="store_true", help="print the token ids too")
    show.add_argument("--json", action="store_true", help="the whole episode as JSON")
    return parser


def _run(parser: argparse.ArgumentParser, argv: list[str], commands) -> int:
    try:
        args = parser.parse_args(argv)
        return commands(args)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except (TraceError, OSError) as err:
        sys.stderr.write(f"{parser.prog}: error: {err}\n")  # plain: one line, never wrapped or coloured
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def traces_main(argv: list[str]) -> int:
    """`tinygpt traces ls|show|stats ...`; returns the exit code."""
    commands = {"ls": _cmd_ls, "show": _cmd_show, "stats": _cmd_stats}
    return _run(_traces_parser(), argv, lambda args: commands[args.command](args))


def _to_data_parser() -> argparse.ArgumentParser:
    d = ExportConfig()
    parser = _Parser(prog="tinygpt traces-to-data", epilog=_TO_DATA_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Turn recorded episodes into training data: filter, decontaminate, dedupe "
                                 "(exact + MinHash LSH), then write pre-tokenized rows and chat records.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="trace files or directories (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    keep = parser.add_argument_group("filters")
    keep.add_argument("--require-pass", action="store_true", help="keep only episodes the checker passed")
    keep.add_argument("--min-reward", type=float, help="keep only episodes with reward >= this")
    keep.add_argument("--split", action="append", default=[], help="keep this split (repeatable; default all)")
    keep.add_argument("--model", action="append", default=[], help="keep this model name or fingerprint "
                                                                   "(repeatable; default all)")
    dedupe = parser.add_argument_group("dedupe and decontamination")
    dedupe.add_argument("--exact-dedupe", action=argparse.BooleanOptionalAction, default=d.exact_dedupe,
                        help="drop episodes whose text equals a kept one's")
    dedupe.add_argument("--near-dedupe", action=argparse.BooleanOptionalAction, default=d.near_dedupe,
                        help="drop near duplicates (MinHash LSH over word n-grams)")
    dedupe.add_argument("--num-perm", type=int, default=d.num_perm, help="MinHash permutations (default %(default)s)")
    dedupe.add_argument("--ngram", type=int, default=d.ngram, help="shingle size in words (default %(default)s)")
    dedupe.add_argument("--threshold", type=float, default=d.threshold,
                        help="Jaccard similarity that makes a near duplicate (default %(default)s)")
    dedupe.add_argument("--seed", type=int, default=d.seed, help="MinHash seed (default %(default)s)")
    dedupe.add_argument("--decontaminate", action="append", default=[], metavar="EVAL_JSONL",
                        help="eval tasks to keep out (repeatable)")
    dedupe.add_argument("--decontam-ngram", type=int, default=d.decontam_ngram,
                        help="shared word n-gram that marks contamination (default %(default)s)")
    parser.add_argument("--mask-error-turns", action="store_true",
                        help="loss mask 0 on calls whose tool calls got an error result")
    parser.add_argument("--workers", type=int, default=d.workers, help="processes (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _config_from(args) -> ExportConfig:
    return ExportConfig(
        require_pass=args.require_pass, min_reward=args.min_reward, split=tuple(args.split), model=tuple(args.model),
        exact_dedupe=args.exact_dedupe, near_dedupe=args.near_dedupe, num_perm=args.num_perm, ngram=args.ngram,
        threshold=args.threshold, seed=args.seed, decontaminate=tuple(args.decontaminate),
        decontam_ngram=args.decontam_ngram, mask_error_turns=args.mask_error_turns, workers=args.workers,
    )


def _cmd_to_data(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from tinygpt.traces.to_data import traces_to_data

    config = _config_from(args)
    config.check()
    changed = config.changed()
    if changed and not args.json:  # only what differs from the defaults; report.json holds the whole config
        shown = (f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in changed.items())
        sys.stderr.write("traces-to-data: " + ", ".join(shown) + "\n")
    with _progress(args.json) as progress:
        task = progress.add_task("episodes", total=None)
        report = traces_to_data(args.paths, args.out, config,
                                lambda done, total: progress.update(task, completed=done, total=total))
    if args.json:
        _print_json(report)
        return 0
    filtered = sum(report.filtered.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(report.filtered.items()))
    table = Table(box=None, show_header=False, pad_edge=False)
    for key, value in [
        ("files", report.files), ("read", report.read), ("torn", report.torn), ("corrupt", report.corrupt),
        ("incomplete", report.incomplete), ("filtered", f"{filtered}" + (f" ({detail})" if detail else "")),
        ("contaminated", report.contaminated), ("exact-dup", report.exact_dup), ("near-dup", report.near_dup),
        ("written", f"{report.written} ({report.rows} rows, {report.chat_only} chat only)"),
        ("tokens", f"{report.tokens} ({report.trained_tokens} with loss)"), ("seconds", report.seconds),
    ]:
        table.add_row(f"[bold]{key}[/]", escape(str(value)))
    console = _console()
    console.print(table)
    for error in report.errors:
        console.print(f"[red]corrupt:[/] {escape(error)}")
    if len(report.tokenizer_hashes) > 1:
        console.print(f"[yellow]warning:[/] rows come from {len(report.tokenizer_hashes)} tokenizers; "
                      "train on one tokenizer's rows at a time (see tokenizer_hash)")
    console.print(f"wrote {args.out}/rows.jsonl, chat.jsonl, report.json")
    return 0


def traces_to_data_main(argv: list[str]) -> int:
    """`tinygpt traces-to-data PATH... --out DIR ...`; returns the exit code."""
    return _run(_to_data_parser(), argv, _cmd_to_data)
