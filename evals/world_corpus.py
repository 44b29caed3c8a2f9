"""The pretraining corpus of the embedded tool world: gold episodes of the generated suites as chat records.

`gold_chat(suite, task)` plays a task's gold solution through the task's own toolset (real tool results, the
episode's system message and tool declarations) and returns it as a chat record `{"messages", "tools"}`, the
format `tinygpt pretrain` renders with the model's chat template. Each assistant step's text is exactly what the
scripted teacher replays in the agent loop (`episode.reply_text` in the Hermes format of tinygpt's own
template), so the model learns the text it will be asked to write. `small_talk(rng)` adds short tool-less
conversations (greetings, what it can do), so the model also answers a plain chat. `write_corpus` writes a mix of
them as JSONL from the TRAIN split only (its last tasks): no validation or held-out task is ever in the corpus.
It trains nothing (trainer/pretrain.py) and runs no model.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tinygpt.evals.episode import reply_text
from tinygpt.evals.suite import Task, load_suite, start_episode

TOOL_FORMAT = "hermes"  # the tool-call format of tinygpt's own chat template (runtime/chat_template.py)
GREETINGS = ("hi", "hello", "hey", "good morning", "hello there", "hi, who are you?", "what can you do?",
             "can you help me?", "what are you?", "who made you?", "thanks", "thank you!", "bye")
ABOUT = ("I am tinygpt's small world model. I can work with files, a calendar and a shop through tools. "
         "Tell me what you need done.",
         "Hello! I am a small model made by tinygpt. Give me a task about files, your calendar or the shop.",
         "I can move, copy and write files, add and move calendar events, and order things from the shop.")
THANKS = ("You're welcome.", "Glad to help.", "Anytime.")


def gold_chat(suite, task: Task) -> dict:
    """The task's gold episode as a chat record, with the real results of its calls."""
    episode = start_episode(suite, task)
    try:
        system = episode.system if episode.system is not None else suite.SYSTEM
        messages = [{"role": "system", "content": system}] if system else []
        for user, steps in zip(task.turns, task.gold):
            messages.append({"role": "user", "content": user})
            for step in steps:
                messages.append({"role": "assistant", "content": reply_text(step, None, TOOL_FORMAT)})
                for call in () if isinstance(step, str) else step:
                    result = episode.toolset.call(call.name, call.arguments)
                    if result.is_error:  # a gold call must work: generation ran it once already
                        raise RuntimeError(f"{task.id}: gold call {call.name} failed: {result.content}")
                    messages.append({"role": "tool", "name": call.name, "content": result.content})
        return {"messages": messages, "tools": episode.toolset.schemas()}
    finally:
        if episode.close is not None:
            episode.close()


def small_talk(rng: random.Random) -> dict:
    """A short tool-less chat: a greeting or a question about the model, and its answer."""
    user = rng.choice(GREETINGS)
    answer = rng.choice(THANKS) if user.startswith("thank") else ("Goodbye!" if user == "bye" else rng.choice(ABOUT))
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def write_corpus(out: str | Path, mix: dict[str, int], *, small_talk_records: int = 200, seed: int = 0) -> dict:
    """Write `out` (JSONL): the LAST `mix[suite]` train tasks of each suite as gold chats plus small talk,
    shuffled with `seed`; returns counts per source. (The last: `tinygpt retrain` takes its rollouts from the
    first train tasks, so a base that saw a few tasks of a domain never saw the specialist's.)"""
    rng = random.Random(seed)
    records, counts = [], {}
    for name, n in mix.items():
        suite = load_suite(name)
        tasks = suite.tasks("train")
        if n > len(tasks):
            raise ValueError(f"suite {name} has {len(tasks)} train tasks, {n} asked for")
        records += [gold_chat(suite, t) for t in tasks[len(tasks) - n:]] if n else []
        counts[name] = n
    records += [small_talk(rng) for _ in range(small_talk_records)]
    counts["small_talk"] = small_talk_records
    rng.shuffle(records)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts
