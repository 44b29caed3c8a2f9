"""Turn chat messages (OpenAI or Ollama shape) into the model's exact prompt token ids.

Messages become plain dicts for the chat template: OpenAI's `developer` role is a system message, text content
parts are joined (an assistant's refusal parts and `refusal` field count as its text), assistant tool calls
keep their arguments text verbatim (so a re-rendered turn matches what the model wrote), the legacy forms
(an assistant `function_call`, a `function` role result) become a tool call and a tool message, Ollama's
object arguments are passed as objects. Images are refused with a clear
error. Rendering and encoding use the model's own tokenizer and template, as `Engine.encode_chat` does.
Not here: sampling or grammars.
"""
from __future__ import annotations

from typing import Any

import jinja2

from tinygpt.web import wire_ollama as wo
from tinygpt.web import wire_openai as wa
from tinygpt.web.errors import ApiError
from tinygpt.runtime.model_card import ModelCard


def _text(m: wa.ChatMessage, where: str) -> str:
    content = m.content
    if content is None or isinstance(content, str):
        text = content or ""
    else:
        text = ""
        for j, part in enumerate(content):
            if part.type not in ("text", "refusal"):
                raise ApiError(400, f"{where}.content[{j}] has type {part.type!r}; this server's model reads text "
                                    "only: send text parts", param=f"{where}.content[{j}].type")
            if part.type == "refusal" and m.role != "assistant":
                raise ApiError(400, f"{where}.content[{j}] is a refusal part; only assistant messages have them",
                               param=f"{where}.content")
            piece = part.refusal if part.type == "refusal" else part.text
            if piece is None:
                raise ApiError(400, f"{where}.content[{j}] ({part.type} part) has no {part.type!r} text",
                               param=f"{where}.content")
            text += piece
    return text or (m.refusal or "" if m.role == "assistant" else "")


def openai_messages(messages: list[wa.ChatMessage]) -> list[dict]:
    out = []
    for i, m in enumerate(messages):
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        d: dict[str, Any] = {"role": role, "content": _text(m, f"messages[{i}]")}
        calls = list(m.tool_calls or []) + ([wa.ToolCall(function=m.function_call)] if m.function_call else [])
        if calls:
            d["tool_calls"] = [{"id": c.id, "type": "function",
                                "function": {"name": c.function.name, "arguments": c.function.arguments}}
                               for c in calls]
        if role == "tool":
            d["tool_call_id"] = m.tool_call_id or ""
        if m.name:
            d["name"] = m.name
        out.append(d)
    return out


def ollama_messages(messages: list[wo.Message]) -> list[dict]:
    out = []
    for i, m in enumerate(messages):
        if m.images:
            raise ApiError(400, f"messages[{i}] has images; this server takes text only", param="images")
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [{"type": "function", "function": {"name": c.function.name,
                                                                 "arguments": c.function.arguments}}
                               for c in m.tool_calls]
        if m.tool_name:
            d["name"] = m.tool_name
        out.append(d)
    return out


def render(card: ModelCard, messages: list[dict], tools: list[dict] | None) -> str:
    """The chat template applied (with the generation prompt); a template failure is the request's fault."""
    if not messages:
        raise ApiError(400, "messages is empty: give at least one message", param="messages")
    try:
        return card.tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                                  tokenize=False)
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ApiError(400, f"the chat template could not render these messages ({type(exc).__name__}: "
                            f"{exc}); check roles and contents", param="messages") from exc


def encode(card: ModelCard, text: str) -> list[int]:
    """Token ids of `text`, special-token text mapping to its id, no BOS (as Engine.encode)."""
    return list(card.tokenizer.encode(text, add_special_tokens=False))


def check_ids(card: ModelCard, ids: list[int], param: str = "prompt") -> list[int]:
    if not ids:
        raise ApiError(400, "the prompt is empty: it encodes to no tokens", param=param)
    bad = [i for i in ids if not 0 <= i < card.vocab_size]
    if bad:
        raise ApiError(400, f"token id {bad[0]} is outside this model's vocabulary [0, {card.vocab_size})",
                       param=param)
    if len(ids) >= card.context_length:
        raise ApiError(400, f"the prompt is {len(ids)} tokens; this model's context is {card.context_length}. "
                            "Shorten the conversation.", param=param, code="context_length_exceeded")
    return ids
