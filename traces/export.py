"""One episode to training data: a pre-tokenized row from the stored ids, a chat record, and its dedupe text.

`training_row` concatenates each call's `prompt_token_ids + output_token_ids` (no decoding, no re-encoding);
`loss_mask` is 1 exactly on sampled output ids. `chat_record` gives OpenAI-style messages and tools for other
tools. `dedupe_text` is the text that dedupe and decontamination look at. Functions other than `training_row`
read events by their `kind` tag, so they take a reader.Episode or a raw_episode.RawEpisode alike.
This module does not filter or dedupe.
"""
import msgspec

from tinygpt.traces.atraj import ModelCall
from tinygpt.traces.errors import TraceError
from tinygpt.traces.reader import Episode

_ARGS = msgspec.json.Encoder(order="sorted")


class TrainingRow(msgspec.Struct, frozen=True, kw_only=True):
    """A pre-tokenized training example: `loss_mask[i]` is 1 iff `input_ids[i]` was sampled by the model."""

    episode_id: str
    task_id: str
    tokenizer_hash: str
    input_ids: list[int]
    loss_mask: list[int]


class ChatFunction(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str  # JSON text, as in the OpenAI chat format


class ChatToolCall(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str = "function"
    function: ChatFunction


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    role: str
    content: str
    tool_calls: list[ChatToolCall] = []
    tool_call_id: str = ""
    name: str = ""


class ChatRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An episode in the OpenAI chat format: `messages` plus `tools` (function declarations)."""

    episode_id: str
    task_id: str
    messages: list[ChatMessage]
    tools: list[dict]


def kind(event) -> str:
    """The record's `kind` tag: "message", "model_call" or "tool_result"."""
    return type(event).__struct_config__.tag


def is_token_exact(episode) -> bool:
    """True when every model call of the episode carries its exact ids (and there is at least one)."""
    calls = [e for e in episode.events if kind(e) == "model_call"]
    return bool(calls) and all(c.token_exact for c in calls)


def training_row(episode: Episode, mask_error_turns: bool = False) -> TrainingRow:
    """The episode's full id sequence and loss mask, straight from the recorded ids.

    With `mask_error_turns`, a call whose tool calls got an error result keeps its ids but gets mask 0.
    """
    if not is_token_exact(episode):
        raise TraceError(f"{episode.path}: has a call without exact ids (or no call); it can only be exported as chat")
    failed = calls_with_errors(episode) if mask_error_turns else set()
    input_ids: list[int] = []
    loss_mask: list[int] = []
    calls = (e for e in episode.events if isinstance(e, ModelCall))
    for index, call in enumerate(calls):
        input_ids += call.prompt_token_ids
        input_ids += call.output_token_ids
        loss_mask += [0] * len(call.prompt_token_ids)
        loss_mask += [0 if index in failed else 1] * len(call.output_token_ids)
    h = episode.header
    return TrainingRow(
        episode_id=h.episode_id, task_id=h.task_id, tokenizer_hash=h.tokenizer_hash,
        input_ids=input_ids, loss_mask=loss_mask,
    )


def calls_with_errors(episode) -> set[int]:
    """Indexes of model calls one of whose tool calls got an error result, an unusable call's included.

    Results follow the call that made them, so each belongs to the model call before it: ids are not looked up,
    as a model that writes its own ids (Mistral) may repeat one in a later step, and an unusable call's result
    answers no id ("")."""
    failed = set()
    index = -1
    for event in episode.events:
        tag = kind(event)
        if tag == "model_call":
            index += 1
        elif tag == "tool_result" and event.is_error and index >= 0:  # results before any call: a loaded history
            failed.add(index)
    return failed


def _chat_message(event) -> ChatMessage:
    tag = kind(event)
    calls = [
        ChatToolCall(id=c.id, function=ChatFunction(name=c.name, arguments=_ARGS.encode(c.arguments).decode()))
        for c in event.tool_calls
    ] if tag != "tool_result" else []
    if tag == "message":
        return ChatMessage(role=event.role, content=event.content, tool_calls=calls)
    if tag == "tool_result":
        return ChatMessage(role="tool", content=event.content, tool_call_id=event.call_id, name=event.name)
    content = event.content if event.content is not None else event.text
    return ChatMessage(role="assistant", content=content, tool_calls=calls)


def chat_record(episode) -> ChatRecord:
    """The episode as OpenAI-style chat messages (every turn, in order) and its tool declarations."""
    tools = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in episode.header.tools
    ]
    return ChatRecord(
        episode_id=episode.header.episode_id, task_id=episode.header.task_id,
        messages=[_chat_message(e) for e in episode.events], tools=tools,
    )


def dedupe_text(episode) -> str:
    """Everything but system messages, in order: user text, assistant text and calls, tool results.

    System prompts are left out because every episode of a deployment shares them (they would make all
    episodes look alike).
    """
    parts = []
    for event in episode.events:
        tag = kind(event)
        if tag == "message":
            if event.role != "system":
                parts.append(event.content)
        elif tag == "tool_result":
            parts.append(event.content)
            continue
        else:
            parts.append(event.content if event.content is not None else event.text)
        parts.extend(f"{c.name} {_ARGS.encode(c.arguments).decode()}" for c in event.tool_calls)
    return "\n".join(parts)
