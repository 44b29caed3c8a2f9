"""The user's own chats as a suite: what `tinygpt quickstart --data FILE.jsonl` (and retrain's `data`) learn from
and are judged on.

`read_chats(path, tokenizer, max_tokens)` reads a JSONL file of finished chats in the formats the trainer reads
(mlx-lm's "chat" / "tools" records `{"messages": [...], "tools": [...]}`, assistant `tool_calls` answered by `tool`
messages; a completions record `{"prompt", "completion"}` is a user + assistant chat) and checks every line before
anything is done with it: JSON, roles in order, an assistant turn to learn, each call's tool declared and its
arguments valid for the tool's schema, and the whole chat, rendered by the base model's own chat template, no
longer than the training sequences. Problems are one `ChatDataError` naming each bad line; the file is only read.
Only chats are taken: the recorded assistant turns are both the demonstrations and the answers a model is scored
against. A task (a request without its answer, or a text record) would need a checker that judges a model's own
answer from the world's state, which a JSONL line cannot carry; the embedded tool world's tasks have theirs
(evals/generated.py) and are what `tinygpt quickstart` without --data runs.
`ChatSuite` splits the chats by a SHA-256 of their content (messages + tools) into train / validation / held-out,
60 / 20 / 20 as the generated suites do (generated.split_of): an edited file keeps every unchanged chat in its
split, so a held-out chat never becomes a train chat. Exact duplicates are kept once. It runs no model
(chat_eval.py scores them).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
import jinja2

from tinygpt.evals.errors import EvalError
from tinygpt.evals.generated import SPLITS, split_of
from tinygpt.evals.suite import Task

ROLES = ("system", "user", "assistant", "tool")
MIN_RECORDS = 10  # a split of fewer chats leaves the train or the held-out side empty too often
SHOWN_ERRORS = 8  # bad lines listed in one error
FORMAT_HELP = ('one JSON object per line: {"messages": [{"role": "user", "content": ...}, {"role": "assistant", '
               '"content": ...}, ...], "tools": [...]} (mlx-lm\'s chat/tools format)')


class ChatDataError(EvalError):
    """The --data file cannot be used; the message names each bad line and what was wrong."""


class BadLine(Exception):
    """One record's problem (the caller adds the line number)."""


@dataclass(frozen=True)
class Reference:
    """One recorded assistant turn to score: `calls` ((name, arguments) of each tool call) when it called tools,
    else None and `text` is its answer."""

    index: int  # the assistant message's position in the chat
    calls: tuple[tuple[str, dict], ...] | None
    text: str


@dataclass(frozen=True)
class Chat:
    """One valid chat of the file."""

    line: int
    messages: list[dict]
    tools: list[dict]
    digest: str
    references: tuple[Reference, ...]
    tokens: int

    def record(self, task_id: str) -> dict:
        """The chat as the trainer reads it (episode_id: its group, so its windows stay on one side)."""
        return {"messages": self.messages, **({"tools": self.tools} if self.tools else {}), "episode_id": task_id}


# ---- reading and checking --------------------------------------------------------------------------------------
def read_chats(path: str | Path, tokenizer, max_tokens: int) -> tuple[list[Chat], int]:
    """Every chat of `path`, checked (module docstring), in file order without exact duplicates; and the number
    of duplicates left out. ChatDataError lists the bad lines (all of them are read first)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ChatDataError(f"--data {path}: cannot read it ({exc.strerror or exc})") from None
    checker = _Checker(tokenizer, max_tokens)
    chats, errors, seen, duplicates, records = [], [], set(), 0, 0
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        records += 1
        try:
            chat = checker.chat(_decode(line), number)
        except BadLine as why:
            errors.append(f"line {number}: {why}")
            continue
        if chat.digest in seen:
            duplicates += 1
            continue
        seen.add(chat.digest)
        chats.append(chat)
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise ChatDataError(f"--data {path}: {len(errors)} of {records} records cannot be used (the file is left as "
                            f"it is; fix these lines and run the same command again):\n{shown}{more}")
    if records == 0:
        raise ChatDataError(f"--data {path} is empty; it must hold at least {MIN_RECORDS} chats, {FORMAT_HELP}")
    if len(chats) < MIN_RECORDS:
        raise ChatDataError(f"--data {path} holds {len(chats)} distinct chats; at least {MIN_RECORDS} are needed: they "
                            "are split by a hash of their content into train (60%), validation (20%) and held-out "
                            "(20%) chats, and the eval gate decides only on 10 or more held-out ones (about 50 chats)")
    return chats, duplicates


def _decode(line: bytes):
    try:
        text = line.decode("utf-8-sig")  # a byte-order mark (some editors write one) is not part of the JSON
    except UnicodeDecodeError as exc:
        raise BadLine(f"not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise BadLine("not valid JSON (nested too deeply)") from None


class _Checker:
    """Checks records against the base model's tokenizer, chat template and tool-call format."""

    def __init__(self, tokenizer, max_tokens: int):
        from tinygpt.runtime import tool_formats

        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.format = tool_formats.resolve(None, tokenizer)
        self._specs: dict[str, dict] = {}

    def chat(self, record, number: int) -> Chat:
        messages, tools = _messages_of(record)
        specs = self.specs(tools)
        references = self.references(messages, specs)
        tokens = self.length(messages[: references[-1].index + 1], tools)
        body = json.dumps({"messages": messages, "tools": tools}, sort_keys=True, ensure_ascii=False)
        return Chat(line=number, messages=messages, tools=tools, digest=hashlib.sha256(body.encode()).hexdigest(),
                    references=tuple(references), tokens=tokens)

    def specs(self, tools: list[dict]) -> dict:
        """{name: parameters schema} of the record's tools; the grammar is compiled once per distinct list."""
        from tinygpt.runtime.grammar import GrammarError, compile_tools
        from tinygpt.runtime.tool_calls import SchemaError, tool_specs

        key = json.dumps(tools, sort_keys=True)
        if key not in self._specs:
            try:
                specs = {s.name: s.parameters for s in tool_specs(tools)}
                if tools:
                    compile_tools(self.tokenizer, tools)
            except (SchemaError, GrammarError) as exc:
                raise BadLine(f"\"tools\": {exc}") from None
            self._specs[key] = specs
        return self._specs[key]

    def references(self, messages: list[dict], specs: dict) -> list[Reference]:
        """Each assistant turn's calls or text, with the roles' order checked."""
        out: list[Reference] = []
        owed = 0  # tool results the last assistant turn's calls still wait for
        for i, m in enumerate(messages):
            role, previous = m["role"], messages[i - 1]["role"] if i else None
            where = f"messages[{i}] ({role})"
            if role == "system" and i:
                raise BadLine(f"{where}: a system message may only come first")
            if role == "tool":
                if owed == 0:
                    raise BadLine(f"{where}: a tool result must answer a call of the assistant message before it "
                                  "(one tool message per call)")
                owed -= 1
                continue
            if owed:
                raise BadLine(_unanswered(out[-1], owed) + f" before {where}; answer each call with one tool message")
            if role == "assistant":
                if previous not in ("user", "tool"):
                    raise BadLine(f"{where}: an assistant message must follow a user message or tool results, not "
                                  f"{'the start of the chat' if previous is None else 'a ' + previous + ' message'}")
                out.append(self.reference(i, m, specs))
                owed = len(out[-1].calls or ())
        if not out:
            raise BadLine("no assistant turn: a chat needs the assistant's answers to learn and to score against "
                          "(a request without its answer is a task; --data takes finished chats only)")
        if owed and out[-1].index != len(messages) - 1:
            raise BadLine(_unanswered(out[-1], owed) + " at the end of the chat")
        return out

    def reference(self, i: int, m: dict, specs: dict) -> Reference:
        where = f"messages[{i}] (assistant)"
        text = m.get("content") or ""
        calls = [self.structured(where, j, c, specs) for j, c in enumerate(m.get("tool_calls") or [])]
        if text and self.format.anywhere and self.format.trigger in text:  # calls written in the content
            calls += self.written(where, text, specs)
        return Reference(index=i, calls=tuple(calls) if calls else None, text="" if calls else text)

    def structured(self, where: str, j: int, call, specs: dict) -> tuple[str, dict]:
        where = f"{where}.tool_calls[{j}]"
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadLine(f"{where}: a call is {{\"type\": \"function\", \"function\": {{\"name\": ..., "
                          "\"arguments\": ...}}")
        name, args = fn["name"], fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise BadLine(f"{where}: the arguments of {name} are not JSON ({exc.msg})") from None
        if not isinstance(args, dict):
            raise BadLine(f"{where}: the arguments of {name} must be a JSON object, not {type(args).__name__}")
        return self.declared(where, name, args, specs)

    def written(self, where: str, text: str, specs: dict) -> list[tuple[str, dict]]:
        from tinygpt.runtime.tool_calls import parse_tool_calls

        parsed = parse_tool_calls(text, self.tokenizer, _as_tools(specs), tool_format=self.format,
                                  finish_reason="stop")
        if parsed.error and "unknown tool" in parsed.error:
            raise BadLine(f"{where}: its text calls a tool the record's \"tools\" do not declare ({parsed.error})")
        if parsed.error or parsed.truncated:
            raise BadLine(f"{where}: its text holds a {self.format.name} tool call that cannot be read: "
                          f"{parsed.error or 'the call is not closed'}")
        return [(c.name, dict(c.arguments)) for c in parsed.calls]

    @staticmethod
    def declared(where: str, name: str, args: dict, specs: dict) -> tuple[str, dict]:
        from tinygpt.runtime.grammar_schema import validate

        if name not in specs:
            have = f"declares {', '.join(specs)}" if specs else "has no \"tools\" list"
            raise BadLine(f"{where}: calls {name!r}, but the record {have}; declare every tool it calls")
        problem = validate(args, specs[name])
        if problem:
            raise BadLine(f"{where}: the arguments of {name} do not match its schema ({problem}); a model under "
                          "the tool grammar could never write this call")
        return name, args

    def length(self, messages: list[dict], tools: list[dict]) -> int:
        try:
            text = self.tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=False,
                                                      tokenize=False)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # the template's own raise_exception, or an error it hits on this record's shape
            raise BadLine(f"the base model's chat template cannot render this chat ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'})") from None
        n = len(self.tokenizer.encode(text, add_special_tokens=False))
        if n > self.max_tokens:
            raise BadLine(f"the chat is {n:,} tokens with the base model's tokenizer and chat template, more than "
                          f"the {self.max_tokens:,} the specialist trains on (longer chats would be cut into windows "
                          "that lose their start); shorten or split it")
        return n


def _messages_of(record) -> tuple[list[dict], list[dict]]:
    """(messages, tools) of a chat or completions record, the shapes checked; BadLine for anything else."""
    if not isinstance(record, dict):
        raise BadLine(f"a record is a JSON object, not {type(record).__name__}; {FORMAT_HELP}")
    if "messages" not in record:
        if "prompt" in record and "completion" in record:
            if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
                raise BadLine("a completions record's \"prompt\" and \"completion\" are strings")
            record = {"messages": [{"role": "user", "content": record["prompt"]},
                                   {"role": "assistant", "content": record["completion"]}]}
        elif "text" in record:
            raise BadLine("a text record has no turns: nothing to score a model's answer against; --data takes "
                          f"chats, {FORMAT_HELP}")
        else:
            raise BadLine(f"no \"messages\" (keys: {', '.join(map(str, record)) or 'none'}); --data takes finished "
                          "chats, not tasks: a task needs a checker to judge a model's answer, which a record "
                          f"cannot carry. Each line is {FORMAT_HELP}")
    messages, tools = record["messages"], record.get("tools") or []
    if not isinstance(messages, list) or not messages:
        raise BadLine("\"messages\" must be a non-empty list of {\"role\", \"content\"} objects")
    if not isinstance(tools, list):
        raise BadLine("\"tools\" must be a list of function declarations")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else None
            raise BadLine(f"messages[{i}]: the role must be one of {', '.join(ROLES)}, not {role!r}")
        content = m.get("content")
        if not (isinstance(content, str) or content is None and m["role"] == "assistant" and m.get("tool_calls")):
            raise BadLine(f"messages[{i}] ({m['role']}): \"content\" must be a string (text parts are not read)")
        if m.get("tool_calls") is not None and (m["role"] != "assistant" or not isinstance(m["tool_calls"], list)):
            raise BadLine(f"messages[{i}] ({m['role']}): \"tool_calls\" is a list, on assistant messages only")
    return messages, tools


def _unanswered(reference: Reference, owed: int) -> str:
    n = len(reference.calls)
    return (f"messages[{reference.index}] makes {n} tool call{'s' if n > 1 else ''} but {n - owed} tool "
            f"result{'' if n - owed == 1 else 's'} follow{'s' if n - owed == 1 else ''} it")


def _as_tools(specs: dict) -> list[dict]:
    return [{"type": "function", "function": {"name": n, "parameters": p}} for n, p in specs.items()]


# ---- the suite -----------------------------------------------------------------------------------------------------
class ChatSuite:
    """The chats as a suite (NAME, SPLITS, SYSTEM, tasks(split): what evals.suite.select_tasks asks of one), plus
    `request(task)` (its first request, for the router) and `tool_names()`. A task is one chat; its `data` is the
    Chat; `gold` is empty (the references are in the chat). Played by chat_eval.run_chats, not by the runner."""

    SPLITS = SPLITS
    SYSTEM = None

    def __init__(self, name: str, chats: list[Chat], *, source: str = "", duplicates: int = 0):
        self.NAME, self.source, self.duplicates = name, source, duplicates
        self._tasks: dict[str, list[Task]] = {s: [] for s in SPLITS}
        for chat in chats:
            split = split_of(chat.digest)
            kind = "tool-calls" if any(r.calls for r in chat.references) else "text"
            self._tasks[split].append(Task(
                id=f"{name}-{chat.digest[:12]}", suite=name, split=split, category=kind,
                turns=tuple(m["content"] for m in chat.messages if m["role"] == "user"), gold=(),
                max_steps=len(chat.references), data=chat))

    def tasks(self, split: str) -> list[Task]:
        return list(self._tasks[split])

    def counts(self) -> dict[str, int]:
        return {s: len(t) for s, t in self._tasks.items()}

    def request(self, task: Task) -> tuple[list[dict], list[dict]]:
        """The chat's first request as a client sends it: the messages through the first user message, and its
        tools."""
        chat: Chat = task.data
        first = next(i for i, m in enumerate(chat.messages) if m["role"] == "user")
        return [dict(m) for m in chat.messages[: first + 1]], list(chat.tools)

    def tool_names(self) -> list[str]:
        return sorted({t.get("function", t).get("name") for ts in self._tasks.values() for task in ts
                       for t in task.data.tools})


def load_chat_suite(name: str, path: str | Path, tokenizer, max_tokens: int) -> ChatSuite:
    """The suite of the chats in `path`; ChatDataError for a file that cannot be used or a split left empty."""
    chats, duplicates = read_chats(path, tokenizer, max_tokens)
    suite = ChatSuite(name, chats, source=str(path), duplicates=duplicates)
    counts = suite.counts()
    empty = [s for s in ("train", "heldout") if not counts[s]]
    if empty:
        raise ChatDataError(f"--data {path}: the content-hash split put none of its {len(chats)} chats in "
                            f"{' and '.join(empty)} (train {counts['train']}, validation {counts['validation']}, "
                            f"held-out {counts['heldout']}); add chats (about 50 give the gate 10 held-out ones)")
    return suite

