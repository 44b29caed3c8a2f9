"""A synthetic tool-call task for the trainer tests, recorded as real `.atraj` episodes.

The task: a user asks for the weather or the time in a city; the assistant calls get_weather / get_time with
{"city": ...}, reads the tool result and answers "done: <city>". Prompts come from 4 templates per tool x 8
cities; 16 (template, city) pairs are held out (never recorded) for the learning test. Episodes are recorded
with the real traces Recorder, ids appended turn by turn through runtime.transcript.Transcript on the model's
own chat template (exactly the appends the agent makes, the scripted teacher's replies encoded once + EOS, as
runtime.policy.ScriptedPolicy does), then exported with traces-to-data. No tools block is rendered in the
prompt (tools=None) so a CI run trains on ~70-token rows; test_masks checks episodes with a tools block too.
"""
from __future__ import annotations

import json
import time

from tinygpt.runtime.transcript import Transcript
from tinygpt.traces.atraj import Header, Reward, Sampling, ToolSpec, Verdict
from tinygpt.traces.recorder import Recorder

CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Rome")
TEMPLATES = {"get_weather": ("weather in {c}?", "is it raining in {c}?", "forecast for {c}", "how warm is {c}?"),
             "get_time": ("time in {c}?", "what hour is it in {c}?", "clock for {c}", "is it late in {c}?")}
TOOLS = [{"type": "function", "function": {"name": name, "description": f"{name.split('_')[1]} in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"], "additionalProperties": False}}}
         for name in TEMPLATES]


def task_items():
    """(tool, prompt, city, held_out) for every template x city."""
    for tool, templates in TEMPLATES.items():
        for ti, template in enumerate(templates):
            for ci, city in enumerate(CITIES):
                yield tool, template.format(c=city), city, (ti + ci) % 4 == 0


def call_text(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def record_episode(directory, engine, episode_id: str, prompt: str, tool: str, city: str, *, passed: bool = True,
                   tools: list | None = None, split: str = "train"):
    """Record user -> tool call -> tool result -> answer as an `.atraj` episode; return its path."""
    loaded = engine.loaded
    header = Header(episode_id=episode_id, task_id=f"{tool}:{prompt}", split=split, created_at=time.time(),
                    model=loaded.name, model_fingerprint=loaded.fingerprint, tokenizer_hash=loaded.tokenizer_hash,
                    chat_template_hash=loaded.chat_template_hash, sampling=Sampling(temperature=0.0),
                    tools=[ToolSpec(name=t["function"]["name"], description=t["function"]["description"],
                                    parameters=t["function"]["parameters"]) for t in (tools or [])])
    t = Transcript(engine=engine, tools=tools)
    eos = engine.tokenizer.eos_token_id
    with Recorder(directory, header, fsync="none") as rec:
        pending = t.add_messages({"role": "user", "content": prompt})
        rec.message("user", prompt, pending)
        reply = call_text(tool, city=city)
        out = engine.encode(reply) + [eos]
        rec.model_call(prompt_token_ids=pending, output_token_ids=out, text=reply, content="",
                       tool_calls=[{"id": "c1", "name": tool, "arguments": {"city": city}}],
                       finish_reason="tool_calls", latency_s=0.0)
        t.add_output(out, {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": tool, "arguments": {"city": city}}}]}, True)
        result = f"ok {city}"
        pending = t.add_messages({"role": "tool", "tool_call_id": "c1", "name": tool, "content": result})
        rec.tool_result(call_id="c1", name=tool, content=result, token_ids=pending)
        answer = f"done: {city}"
        out = engine.encode(answer) + [eos]
        rec.model_call(prompt_token_ids=pending, output_token_ids=out, text=answer, content=answer,
                       finish_reason="stop", latency_s=0.0)
        return rec.end(Reward(value=float(passed), source="test"), Verdict(passed=passed, checker="test"))


def record_task(directory, engine, *, tools: list | None = None, failed_every: int = 0) -> int:
    """Record every training (not held-out) task; with `failed_every` n, every n-th episode's verdict fails."""
    n = 0
    for i, (tool, prompt, city, held) in enumerate(task_items()):
        if not held:
            n += 1
            record_episode(directory, engine, f"ep{i:03d}", prompt, tool, city, tools=tools,
                           passed=not (failed_every and n % failed_every == 0))
    return n
