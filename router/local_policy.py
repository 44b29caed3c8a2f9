"""`LocalMessagePolicy`: the model loaded here as a message-level policy, the fallback when a backend fails.

Each reply renders the whole conversation (OpenAI messages and tools) with the model's chat template, generates
under the tool grammar (runtime/grammar.py: the same constraint a local agent step uses), and parses the calls
out of the sampled ids (runtime/tool_calls.py). The answer's text streams up to the tool format's trigger (the
call text itself is not shown; its calls come back as `WrittenCall`s). The conversation is re-rendered every
time, so nothing here is token-exact: a turn it answers is recorded like any message-level one. Not here:
when to fall back (guard.py).
"""
from __future__ import annotations

import json
from typing import Iterator

from tinygpt.runtime.message_policy import AssistantReply, Reply, WrittenCall
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.traces.atraj import Usage

LOCAL = "local"  # the fallback name that means the model loaded here (no backend may take it)


class LocalMessagePolicy:
    """`engine`'s model, answering OpenAI-format conversations."""

    def __init__(self, engine, *, grammar_backend: str = "llguidance", tool_format: str | None = None):
        self.engine, self.grammar_backend, self.tool_format = engine, grammar_backend, tool_format or None
        self.model = engine.loaded.name or str(engine.loaded.path)
        self.fingerprint = engine.loaded.fingerprint
        self.address = LOCAL

    def reply(self, messages: list[dict], tools: list[dict], *, tool_choice: str | dict,
              parallel_tool_calls: bool, params: SamplingParams) -> Reply:
        return Reply(lambda reply: self._run(reply, messages, tools, tool_choice, parallel_tool_calls, params))

    def _run(self, reply: Reply, messages, tools, tool_choice, parallel_tool_calls, params) -> Iterator[str]:
        from tinygpt.runtime.grammar import compile_tools
        from tinygpt.runtime.tool_calls import parse_tool_calls

        tokenizer = self.engine.tokenizer
        grammar = compile_tools(tokenizer, tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls,
                                backend=self.grammar_backend, tool_format=self.tool_format) if tools else None
        prompt = self.engine.encode_chat(messages, tools or None)
        gen = self.engine.stream(prompt, params, logits_processors=[grammar.processor()] if grammar else None)
        trigger = grammar.format.trigger if grammar is not None else ""
        text, shown = "", 0
        try:
            for token in gen:
                text += token.text
                cut = text.find(trigger) if trigger else -1
                end = cut if cut >= 0 else len(text) - _held(text, trigger)
                if end > shown:
                    yield text[shown:end]
                    shown = end
        finally:
            gen.close()
        r = gen.result
        parsed = parse_tool_calls(r.output_ids, tokenizer, tools, tool_format=grammar.format if grammar else None,
                                  finish_reason=r.finish_reason)
        calls = [WrittenCall(id=c.id, name=c.name, arguments=json.dumps(c.arguments, ensure_ascii=False))
                 for c in ([] if parsed.truncated else parsed.calls)]
        finish = "length" if parsed.truncated else ("tool_calls" if calls else r.finish_reason)
        reply.result = AssistantReply(content=parsed.content, calls=calls, finish_reason=finish, model=self.model,
                                      usage=Usage(backend=LOCAL, input_tokens=len(prompt),
                                                  output_tokens=len(r.output_ids), cost_usd=0.0))


def _held(text: str, trigger: str) -> int:
    """How many characters at the end of `text` may be the start of `trigger` (held back until it is known)."""
    return next((k for k in range(len(trigger) - 1, 0, -1) if text.endswith(trigger[:k])), 0)
