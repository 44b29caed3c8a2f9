"""Multi-turn agent conversations on each shipped family's real chat template (Qwen/hermes with tinygpt's template,
Llama 3.1, Mistral Nemo, and a template that names no tool format): the transcript's ids are what the engine
consumed, and every id run appended decodes to what the template writes for those messages.

Each conversation has a system message, an answer cut off by the token budget, a turn that stops at max_steps
(its tool results are followed by the next user message), a tool call then an answer, and a plain answer.
Mistral Nemo's template cannot render such a conversation whole (it refuses a user message right after tool
results and writes the tools and system prompt before the last user message only), so its expected text is
spelled out piece by piece from the template's rules.
"""
import json
from types import SimpleNamespace

import pytest

from tinygpt.runtime import agent_events as ev
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.recording import ConversationRecorder
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.transcript import TemplateError, Transcript
from tinygpt.tools.registry import Toolset
from tinygpt.traces.atraj import ModelCall, ToolResult
from tinygpt.traces.export import training_row
from tinygpt.traces.reader import read_episode

pytestmark = pytest.mark.usefixtures("one_blas_thread")

FAMILIES = {"hermes": "qwen_engine", "llama3": "llama3_engine", "mistral": "mistral_engine", "json": "plain_engine"}
SYSTEM = "Be brief."


def ls(path: str) -> dict:
    """List a directory.

    Args:
        path: the directory
    """
    return {"files": ["a.txt", "b.txt"] if path == "." else ["guide.md"]}


def toolset() -> Toolset:
    return Toolset([ls], timeout_s=None)


def call_json(c: dict, args_key: str = "arguments") -> str:
    return json.dumps({"name": c["function"]["name"], args_key: c["function"]["arguments"]})


def mistral_text(engine, tools, messages: list[dict]) -> str:
    """What Nemo's template writes for `messages`, appended message by message: the tools block and the system
    prompt before every user message (each was the last one when it was appended), calls with their ids, results
    with the id they answer."""
    probe = engine.render([{"role": "user", "content": "x"}], tools)
    block = probe[len("<s>"):probe.index("[INST]")]
    assert block.startswith("[AVAILABLE_TOOLS][") and block.endswith("[/AVAILABLE_TOOLS]")
    system = messages[0]["content"] + "\n\n" if messages[0]["role"] == "system" else ""
    parts = ["<s>"]
    for m in messages[1 if system else 0:]:
        if m["role"] == "user":
            parts.append(f"{block}[INST]{system}{m['content']}[/INST]")
        elif m.get("tool_calls"):
            objs = [call_json(c)[:-1] + f', "id": "{c["id"]}"' + "}" for c in m["tool_calls"]]
            parts.append("[TOOL_CALLS][" + ", ".join(objs) + "]</s>")
        elif m["role"] == "assistant":
            parts.append(m["content"] + "</s>")
        else:
            result = f'{{"content": {m["content"]}, "call_id": "{m["tool_call_id"]}"}}'
            parts.append(f"[TOOL_RESULTS]{result}[/TOOL_RESULTS]")
    return "".join(parts)


def expected_text(family: str, engine, tools, messages: list[dict]) -> str:
    """The text the whole transcript must decode to when the model is called after `messages`."""
    if family == "mistral":
        return mistral_text(engine, tools, messages)
    if family == "json":  # the template knows no calls: an answer with calls is the call text the model wrote
        messages = [dict(m, content="\n".join(call_json(c) for c in m["tool_calls"])) if m.get("tool_calls") else m
                    for m in messages]
    return engine.render(messages, tools, add_generation_prompt=True)


def Call(name: str, arguments: dict) -> SimpleNamespace:
    """A reply that calls a tool (ForcedPolicy writes it in the model's tool format)."""
    return SimpleNamespace(name=name, arguments=arguments)


TURNS = [  # (user message, max_tokens, max_steps, replies): each turn ends as the comment says
    ("hello", 3, 3, ["Hello there, my friend"]),                                         # length (cut off)
    ("list the files", 64, 1, [Call("ls", {"path": "."})]),                              # max_steps
    ("and the docs?", 64, 3, [Call("ls", {"path": "docs"}), "One file: guide.md."]),     # call, then answer
    ("thanks", 64, 3, ["You are welcome."]),                                             # answer
]
ENDS = ["length", "max_steps", "answer", "answer"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_multi_turn_conversation_appends_exactly_what_the_template_writes(family, request, forced_policy, tmp_path):
    engine = request.getfixturevalue(FAMILIES[family])
    agent = None
    seen: list[tuple[list[int], list[dict]]] = []  # (ids given to the engine, the messages then), per model call

    class Watched(forced_policy):
        def stream(self, ids, params, session, processor):
            seen.append((list(ids), [dict(m) for m in agent.transcript.messages]))
            return super().stream(ids, params, session, processor)

    policy = Watched(engine, [r for *_, replies in TURNS for r in replies])
    agent = Agent(engine, toolset(), AgentConfig(system=SYSTEM), policy=policy)
    tools, tok = agent.tools, engine.tokenizer
    conversation = ConversationRecorder(tmp_path, engine, agent, task_id="families", split="test")
    for (user, max_tokens, max_steps, _), end in zip(TURNS, ENDS):
        agent.config.sampling, agent.config.max_steps = SamplingParams(max_tokens=max_tokens), max_steps
        events = list(conversation.record(agent.run(user)))
        assert events[-1].reason == end, [e for e in events if isinstance(e, ev.Error)]
        # the engine consumed exactly the transcript's ids (a max_steps turn's results: on the next turn)
        assert agent.session.ids == agent.transcript.ids[:agent.transcript.output_end]
    assert agent.session.ids == agent.transcript.ids
    assert not [m for m in agent.transcript.messages if m.get("name") == "invalid_call"]
    assert len(seen) == len(policy.generations) == 5
    for (ids, messages), gen in zip(seen, policy.generations):
        assert gen.result.prompt_ids == ids
        assert tok.decode(ids) == expected_text(family, engine, tools, messages)
    for segment in agent.transcript.segments:  # each run of ids was tokenized once from its text
        if segment.kind == "prompt":
            assert segment.ids == engine.encode(segment.text) and tok.decode(segment.ids) == segment.text
    episode = read_episode(conversation.end("done"))
    row = training_row(episode)
    assert row.input_ids == agent.transcript.ids
    sampled = [i for e in episode.events if isinstance(e, ModelCall) for i in e.output_token_ids]
    assert [i for i, m in zip(row.input_ids, row.loss_mask) if m] == sampled
    results = [e for e in episode.events if isinstance(e, ToolResult)]
    assert [r.call_id for r in results] == [c.id for e in episode.events if isinstance(e, ModelCall)
                                             for c in e.tool_calls] and not any(r.is_error for r in results)


@pytest.mark.parametrize("end, opens", [("<|eot_id|>", ""), ("<|eom_id|>", ""), (None, "<|eot_id|>")])
def test_a_sampled_end_token_stands_for_the_templates_own(llama3_engine, end, opens):
    """Llama ends a turn with <|eot_id|>, or <|eom_id|> (ipython mode); either closes it. Cut off, the template's
    closer is added."""
    engine, tok = llama3_engine, llama3_engine.tokenizer
    t = Transcript(engine=engine)
    t.add_messages({"role": "user", "content": "hi"})
    out = engine.encode("Hello") + (engine.encode(end) if end else [])
    t.add_output(out, {"role": "assistant", "content": "Hello"}, stopped_on_eos=end is not None)
    added = tok.decode(t.add_messages({"role": "user", "content": "again"}))
    assert added == opens + "<|start_header_id|>user<|end_header_id|>\n\nagain<|eot_id|>" \
                            "<|start_header_id|>assistant<|end_header_id|>\n\n"


def test_what_the_template_refuses_is_a_one_line_template_error_and_appends_nothing(mistral_engine):
    t = Transcript(engine=mistral_engine)
    t.add_messages({"role": "user", "content": "list"})
    call = {"id": "aB3dE5gH9", "type": "function", "function": {"name": "ls", "arguments": {}}}
    t.add_output(mistral_engine.encode('[TOOL_CALLS][{"name": "ls", "arguments": {}, "id": "aB3dE5gH9"}]</s>'),
                 {"role": "assistant", "content": "", "tool_calls": [call]}, stopped_on_eos=True)
    before = (list(t.ids), len(t.messages))
    with pytest.raises(TemplateError, match=r"^the chat template refused the messages: Tool call IDs should be "
                                            r"alphanumeric strings with length 9!$"):
        t.add_messages({"role": "tool", "tool_call_id": "call_1", "content": "[]"})
    assert (t.ids, len(t.messages)) == before
