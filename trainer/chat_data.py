"""Chat, completions and text JSONL (mlx-lm's data formats) to Examples, with a loss mask on every assistant turn.

A chat record `{"messages": [...], "tools": [...]}` is rendered turn by turn with the model's own chat template
through runtime.transcript.Transcript — the same appends the agent makes — so each assistant message's ids are
known: the mask is 1 on each assistant body up to and including the template's end-of-turn token (what the model
samples) and 0 on everything else. mlx-lm's `--mask-prompt` trains only the last assistant message; this trains
all of them. A completions record `{"prompt", "completion"}` is a user + assistant chat. A text record
`{"text"}` is trained on every token (EOS appended), as mlx-lm does.
Per-turn ids are checked against tokenizing the whole rendered conversation at once; a mismatch (a token merge
across a turn boundary) is counted as `retokenized`, and the per-turn ids — the ones the runtime produces — are
used. Not here: rows from traces (rows.py), splitting long sequences (windows.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from tinygpt.runtime.transcript import TemplateError, Transcript
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.example import Example, make_example

_PROBE = [{"role": "user", "content": "\u00a7probe\u00a7"}]
FORMATS = ("chat", "completions", "text")


class TemplateRenderer:
    """A model's chat template and tokenizer in the shape Transcript renders through (render / encode)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos_ids = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])

    def render(self, messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools or None,
                                                  add_generation_prompt=add_generation_prompt, tokenize=False)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))


def record_format(record) -> str | None:
    """"chat", "completions" or "text" for a JSON record in one of mlx-lm's formats, else None."""
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return "chat"
    if "prompt" in record and "completion" in record:
        return "completions"
    if "text" in record:
        return "text"
    return None


class Skip(Exception):
    """This record cannot be trained on; the message is the reason (counted, not fatal)."""


def _assistant_ids(r: TemplateRenderer, t: Transcript, message: dict) -> list[int]:
    """The ids the model would sample for `message` after the transcript so far: its body through end-of-turn."""
    for history in (t.messages, _PROBE):  # the probe: templates that re-render earlier turns (as Transcript does)
        before = r.render(history, t.tools, add_generation_prompt=True)
        after = r.render(history + [message], t.tools, add_generation_prompt=False)
        if after.startswith(before):
            break
    else:
        raise Skip("template_mismatch")
    ids = r.encode(after[len(before):])
    ends = [i for i, tok in enumerate(ids) if tok in r.eos_ids]
    if not ends:
        raise Skip("no_end_of_turn")
    return ids[: ends[-1] + 1]


def render_chat(r: TemplateRenderer, messages: list, tools: list | None) -> tuple[list[int], list[int], bool]:
    """(ids, mask, retokenized) for a conversation; raises Skip when it has nothing to train or cannot be rendered."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                 for m in messages):
        raise Skip("bad_messages")
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last < 0:
        raise Skip("no_assistant_turn")
    t = Transcript(engine=r, tools=tools or None)
    mask: list[int] = []
    pending: list[dict] = []
    try:
        for message in messages[: last + 1]:  # messages after the last assistant turn train nothing
            if message["role"] != "assistant":
                pending.append(message)
                continue
            if not pending:
                raise Skip("assistant_without_prompt")
            mask += [0] * len(t.add_messages(*pending))
            pending = []
            out = _assistant_ids(r, t, message)
            t.add_output(out, message, stopped_on_eos=True)
            mask += [1] * len(out)
    except TemplateError:
        raise Skip("template_mismatch") from None
    except (TypeError, KeyError, ValueError) as exc:  # the template rejected the record's shape
        raise Skip(f"template_error: {type(exc).__name__}") from None
    whole = r.encode(r.render(messages[: last + 1], tools, add_generation_prompt=False))
    return t.ids, mask, whole[: len(t.ids)] != t.ids


def render_text(r: TemplateRenderer, text) -> tuple[list[int], list[int]]:
    if not isinstance(text, str) or not text:
        raise Skip("empty_text")
    ids = r.encode(text)
    eos = r.tokenizer.eos_token_id
    if not ids or ids[-1] != eos:
        ids.append(eos)
    return ids, [1] * len(ids)


def read_chat_file(path: str | Path, tokenizer) -> tuple[list[Example], dict]:
    """Every record of a chat / completions / text JSONL file as an Example, and the counts
    {records, format, retokenized, skipped: {reason: n}}. One format per file; TrainError on bad JSON."""
    path = Path(path)
    r = TemplateRenderer(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise TrainError(f"{path}: the model has no chat template, so chat and completions records cannot be "
                         "rendered; give text records ({\"text\": ...}) or rows from traces-to-data")
    examples: list[Example] = []
    counts: dict = {"records": 0, "format": None, "retokenized": 0, "skipped": {}}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainError(f"{where}: not valid JSON ({exc.msg})") from None
            fmt = record_format(record)
            if fmt is None or (counts["format"] and fmt != counts["format"]):
                want = counts["format"] or "chat {messages}, completions {prompt, completion} or text {text}"
                raise TrainError(f"{where}: not a {want} record (keys: {', '.join(record) if isinstance(record, dict) else type(record).__name__})")
            counts["format"] = fmt
            counts["records"] += 1
            try:
                if fmt == "text":
                    ids, mask = render_text(r, record["text"])
                else:
                    messages = record["messages"] if fmt == "chat" else [
                        {"role": "user", "content": record["prompt"]},
                        {"role": "assistant", "content": record["completion"]}]
                    ids, mask, retok = render_chat(r, messages, record.get("tools"))
                    counts["retokenized"] += retok
            except Skip as why:
                counts["skipped"][str(why)] = counts["skipped"].get(str(why), 0) + 1
                continue
            group = str(record.get("episode_id") or where)
            examples.append(make_example(ids, mask, group, where))
    return examples, counts
