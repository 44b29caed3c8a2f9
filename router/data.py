"""Labelled requests for training a router: from JSON Lines files and from `.atraj` trajectories.

A JSONL line is an object {"text": str | "messages": [...], "tools"?: [names or function declarations],
"domain": str, "group"?: str}; `group` keeps related rows (turns of one task) on the same side of a split. A
trajectory gives its user/system messages before the first model call, its header's tools, and its domain from
the header's labels: `domain`, else `suite` (what `tinygpt eval` records); the task id is its group. A bad line
is a RouterError naming the file and line; a trajectory with no domain label is counted as skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tinygpt.router.errors import RouterError
from tinygpt.router.features import Request, request_from
from tinygpt.traces.atraj import Message, ModelCall
from tinygpt.traces.errors import TraceError
from tinygpt.traces.reader import list_traces, read_episode

DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Example:
    request: Request
    domain: str
    group: str


def read_jsonl(path: str | Path) -> list[Example]:
    """The labelled examples of one JSONL file (blank lines skipped)."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except IsADirectoryError:
        raise RouterError(f"{path} is a directory; --data takes a JSON Lines file of labelled requests") from None
    except FileNotFoundError:
        raise RouterError(f"no labelled data at {path}; --data takes a JSON Lines file of "
                          '{"text": ..., "tools": [...], "domain": ...} objects') from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise RouterError(f"{path}:{number}: not JSON ({exc})") from exc
        out.append(example_from(row, f"{path}:{number}"))
    return out


def example_from(row, where: str) -> Example:
    """One labelled example from a decoded JSONL object; a RouterError naming `where` when it is wrong."""
    if not isinstance(row, dict):
        raise RouterError(f"{where}: expected an object with 'text' or 'messages' and 'domain'")
    domain = row.get("domain")
    if not isinstance(domain, str) or not DOMAIN_RE.fullmatch(domain):
        raise RouterError(f"{where}: 'domain' must be a name (letters, digits, '.', '_', '-'), got {domain!r}")
    text, messages, tools = row.get("text"), row.get("messages"), row.get("tools", [])
    if (text is None) == (messages is None):
        raise RouterError(f"{where}: give exactly one of 'text' (a string) or 'messages' (a list of chat messages)")
    if text is not None and not isinstance(text, str) or messages is not None and not isinstance(messages, list):
        raise RouterError(f"{where}: 'text' must be a string and 'messages' a list")
    if not isinstance(tools, list):
        raise RouterError(f"{where}: 'tools' must be a list of tool names or function declarations")
    try:
        request = request_from(messages, tools, text)
    except ValueError as exc:
        raise RouterError(f"{where}: {exc}") from exc
    if not request.text and not request.tools:
        raise RouterError(f"{where}: the request has no text and no tools; there is nothing to route on")
    group = row.get("group")
    return Example(request=request, domain=domain, group=str(group) if group is not None else request.text)


def read_traces(root: str | Path) -> tuple[list[Example], int]:
    """(examples, skipped) from the finished trajectories under `root`; skipped lack a domain label or text."""
    try:
        paths = list_traces(root)
    except TraceError as exc:
        raise RouterError(str(exc)) from exc
    out, skipped = [], 0
    for path in paths:
        try:
            episode = read_episode(path)
        except TraceError as exc:
            raise RouterError(f"{exc} (move the file away or fix it, then train again)") from exc
        labels = episode.header.labels
        domain = labels.get("domain") or labels.get("suite")
        texts = []
        for event in episode.events:
            if isinstance(event, ModelCall):
                break
            if isinstance(event, Message) and event.role in ("user", "system"):
                texts.append(event.content)
        if not domain or not DOMAIN_RE.fullmatch(domain) or not texts:
            skipped += 1
            continue
        request = Request(text="\n".join(texts), tools=tuple(t.name for t in episode.header.tools))
        out.append(Example(request=request, domain=domain, group=f"{domain}/{episode.header.task_id}"))
    return out, skipped
