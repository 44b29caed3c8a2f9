"""The multi-turn agent loop: one generator of events per user turn.

Each step: the policy (the engine, or a script) generates under the tool grammar from the transcript's exact
ids on the session's persistent KV; calls are parsed from the sampled ids; each is run through the Toolset
(a tool's failure is a result the model sees); results are appended as messages (tokenized once) and the next
step begins, up to `max_steps`. A message-level policy (a remote model: message_policy.py) drives the same
loop without an engine: its step (message_step.py) sends messages and gets text and calls back, and nothing
has ids (token_exact False). Everything that happens is yielded as an event so the REPL, the server and the
trajectory recorder all consume the same stream: the `.atraj` records themselves (traces/atraj.py: Message,
ModelCall, ToolCall, ToolResult) and the stream-only events of agent_events.py. It does not print or record.
A call's `prompt_token_ids` are the ids appended since the previous output of the conversation, whatever turn
it was in, so the calls of a conversation concatenate to exactly the ids the engine consumed (recording.py).
If the consumer stops mid-turn (Ctrl-C), the session is settled (engine.py) but the turn stays in the transcript;
a caller that wants it gone rolls the transcript back to a `mark()` and rewinds the session (tinygpt/repl.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import msgspec

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime import tool_formats
from tinygpt.runtime.engine import Engine
from tinygpt.runtime.message_policy import MessagePolicy
from tinygpt.runtime.message_transcript import MessageTranscript
from tinygpt.runtime.policy import EnginePolicy, Policy
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.transcript import Transcript
from tinygpt.traces.atraj import Message, ModelCall, Sampling, ToolCall, ToolResult


@dataclass
class AgentConfig:
    """How the agent acts. tool_choice: "auto" | "none" | "required" | a tool name."""

    tool_choice: str = "auto"
    parallel_tool_calls: bool = True
    max_steps: int = 20
    system: str | None = None
    grammar_backend: str = "llguidance"
    tool_format: str = ""  # a tool-format name; "": the one the model's chat template writes
    template_tools: bool = True  # False: the chat template is not given the tools (the system prompt lists them)
    sampling: SamplingParams = SamplingParams(max_tokens=256)


class Agent:
    """An agent bound to one engine, one toolset and one conversation (transcript + KV session); or, driven by a
    message-level policy, to no engine and a conversation of messages only (`engine` None, `session` None)."""

    def __init__(self, engine: Engine | None, toolset: Any, config: AgentConfig = AgentConfig(),
                 policy: Policy | MessagePolicy | None = None):
        if config.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {config.max_steps}")
        self.engine, self.toolset, self.config = engine, toolset, config
        self.remote = isinstance(policy, MessagePolicy)
        if engine is None and not self.remote:
            raise ValueError("a local policy needs an engine; only a message-level (remote) policy runs without one")
        self.policy = policy or EnginePolicy(engine)
        self.tools = toolset.schemas()
        choice: Any = config.tool_choice
        if choice not in ("auto", "none", "required"):
            if choice not in toolset.names:
                raise ValueError(f"tool_choice {choice!r} is not one of the tools: {', '.join(toolset.names)}")
            choice = {"type": "function", "function": {"name": choice}}
        self.tool_choice = choice
        self.grammar = self._compile()
        self._invalid: str | None = None
        self.reset()

    def _compile(self):
        from tinygpt.runtime.grammar import compile_tools

        return None if self.remote else compile_tools(
            self.engine.tokenizer, self.tools, tool_choice=self.tool_choice,
            parallel_tool_calls=self.config.parallel_tool_calls, backend=self.config.grammar_backend,
            tool_format=self.config.tool_format or None)

    def offer_tools(self, names: list[str]) -> None:
        """Offer only the toolset's tools named in `names` from the next step on (an eval may withhold some and add
        them mid-conversation). Before the conversation starts these are also the tools its prompt lists; later, a
        token-exact conversation never re-renders its start, so the caller tells the model of new ones in a message
        (a message-level model is sent the new list with every request)."""
        unknown = [n for n in names if n not in self.toolset.names]
        if unknown:
            raise ValueError(f"no tool named {unknown[0]!r} in the toolset")
        self.tools = [t for t in self.toolset.schemas() if t["function"]["name"] in names]
        self.grammar = self._compile()
        if not self.transcript.messages and not self.remote:
            self.transcript.tools = self._template_tools()

    def reset(self) -> None:
        """Forget the conversation (transcript and KV)."""
        if self.remote:  # messages only: no ids, no KV session
            self.transcript, self.session = MessageTranscript(), None
            return
        self.transcript = Transcript(engine=self.engine, tools=self._template_tools())
        self.session = self.engine.new_session()

    def _template_tools(self) -> list[dict] | None:
        return self.tools if self.config.template_tools else None

    def _system(self) -> str | None:
        """The conversation's system message: the configured one, after the tool format's own listing of the
        tools where the format has one (pythonic) and the chat template, given the tools, writes none of them."""
        listing = getattr(tool_formats.own_syntax(self.grammar.format), "system_prompt", None) \
            if not self.remote and self.tools and self.config.template_tools else None
        if listing is None:
            return self.config.system
        probe = [{"role": "user", "content": "?"}]
        if self.engine.render(probe, self.tools) != self.engine.render(probe, None):
            return self.config.system  # the template lists the tools itself
        return listing(self.tools) + (f"\n\n{self.config.system}" if self.config.system else "")

    def run(self, user: str) -> Iterator[ev.AgentEvent]:
        """Handle one user message: yield every event until the turn ends."""
        msgs = [{"role": "user", "content": user}]
        system = self._system() if not self.transcript.messages else None
        if system:
            msgs.insert(0, {"role": "system", "content": system})
        ids = self.transcript.add_messages(*msgs)
        if system:  # appended together with the user message: the user message carries the ids of both
            yield Message(role="system", content=system)
        yield Message(role="user", content=user, token_ids=None if ids is None else list(ids))
        for step in range(1, self.config.max_steps + 1):
            if self.remote:  # a message-level policy's step (message_step imports this module: imported here)
                from tinygpt.runtime.message_step import message_step

                ended = yield from message_step(self, step)
                if ended is not None:
                    yield ev.TurnEnd(ended, step)
                    return
                continue
            call_event = yield from self._model_step()
            if call_event.finish_reason == "truncated":
                yield ev.Error(step, "the tool call was cut off by the token budget (max_tokens) and was not run")
                yield ev.TurnEnd("truncated_call", step)
                return
            more = step < self.config.max_steps  # else the results end the turn: no generation prompt after them
            if not call_event.tool_calls and self._invalid is None:
                yield ev.TurnEnd("answer" if call_event.finish_reason == "stop" else "length", step)
                return
            # an unusable call is a model fault: the usable calls of the answer run, as on the remote path
            # (message_step.py), the model is told why the other could not be used, and it gets another step
            yield from self._run_tools(call_event.tool_calls, more, step, self._invalid)
        yield ev.Error(self.config.max_steps, f"stopped after {self.config.max_steps} steps without an answer")
        yield ev.TurnEnd("max_steps", self.config.max_steps)

    def _model_step(self) -> Iterator[ev.AgentEvent]:
        """One model call; its prompt_token_ids are what it adds to what the engine was given before: every id
        appended since the last output (tool results of a turn that ended at max_steps included), or, in a new or
        loaded conversation, all of them."""
        from tinygpt.runtime.tool_calls import parse_tool_calls

        pending = self.transcript.since_output()
        t0 = time.perf_counter()
        gen = self.policy.stream(self.transcript.ids, self.config.sampling, self.session,
                                 self.grammar.processor())
        try:
            for tok in gen:
                yield ev.Token(tok.token_id, tok.text, tok.logprob)
        finally:  # stopped early (Ctrl-C, consumer closed): settle the KV session now
            gen.close()
        r = gen.result
        parsed = parse_tool_calls(r.output_ids, self.engine.tokenizer, self.tools, tool_format=self.grammar.format,
                                  finish_reason=r.finish_reason)
        self._invalid = parsed.error if parsed.error and not parsed.truncated else None
        # ids as the tool format gives them (some families sample their own); a cut-off answer runs none of its
        # calls, so none are recorded or kept in the history (as on the remote path, message_step.py)
        calls = [] if parsed.truncated else list(parsed.calls)
        finish = "truncated" if parsed.truncated else ("tool_calls" if calls else r.finish_reason)
        message = {"role": "assistant", "content": parsed.content}
        if calls:  # the chat template's (OpenAI) shape
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        self.transcript.add_output(r.output_ids, message, stopped_on_eos=r.finish_reason == "stop")
        call = ModelCall(prompt_token_ids=list(pending), output_token_ids=list(r.output_ids),
                         logprobs=list(r.logprobs), text=r.text, content=parsed.content, tool_calls=calls,
                         finish_reason=finish, latency_s=time.perf_counter() - t0, cached_tokens=r.cached_tokens,
                         sampling=sampling_record(self.config.sampling))
        yield call
        return call

    def _run_tools(self, calls: list[ToolCall], more: bool, step: int, invalid: str | None = None
                   ) -> Iterator[ev.AgentEvent]:
        """Run each call (yielding it first), append all results as one template turn (with the generation prompt
        if `more` steps follow), yield the results; the last carries the ids appended for all of them. `invalid`:
        why a call of the answer could not be used (the parser's words, or what no grammar rules out: two calls
        of one answer with the same id); it is answered after the usable ones by an "invalid_call" result."""
        results = []
        for c in calls:
            yield c
            results.append(self.toolset.call(c.name, c.arguments, call_id=c.id))
        if invalid is not None:
            message = f"Error: your tool call could not be used: {invalid}"
            yield ev.Error(step, message)
            fmt = self.grammar.format  # a family whose template checks result ids (Mistral) gets one of its form
            rendered_id = fmt.new_id() if fmt is not None and fmt.id_key else ""
            results.append(ToolResult(call_id=rendered_id, name="invalid_call", content=message, is_error=True))
        ids = self.transcript.add_messages(*[
            {"role": "tool", "tool_call_id": res.call_id, "name": res.name, "content": res.content}
            for res in results], generation_prompt=more)
        if invalid is not None:  # recorded as the loop records any call that could not be used: no call id
            results[-1] = msgspec.structs.replace(results[-1], call_id="")
        yield from results[:-1]
        yield msgspec.structs.replace(results[-1], token_ids=list(ids))


def sampling_record(params: SamplingParams) -> Sampling:
    """The `.atraj` record of the sampling parameters a call ran under."""
    return Sampling(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, min_p=params.min_p,
                    max_tokens=params.max_tokens, seed=params.seed)
