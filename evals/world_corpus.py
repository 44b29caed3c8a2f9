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
OPENERS = ("hi", "hello", "hey", "good morning", "good evening", "hello there", "hey there", "hiya", "yo",
           "greetings", "morning", "hi again")
QUESTIONS = ("who are you?", "what can you do?", "can you help me?", "what are you?", "who made you?",
             "how are you?", "are you a robot?", "what is your name?", "what do you know about?", "is anyone there?",
             "what should I ask you?", "do you work offline?")
BYES = ("bye", "goodbye", "see you", "that's all for now", "bye for now", "ok, done for today")
THANKS_USER = ("thanks", "thank you!", "thanks a lot", "great, thanks", "perfect, thank you", "cheers")
HELLOS = ("Hello!", "Hi!", "Hey!", "Hello there.", "Hi, good to see you.")
ABOUT = ("I am tinygpt's small world model. I can work with files, a calendar and a shop through tools.",
         "Tell me what you need done.",
         "I am a small model made by tinygpt. Give me a task about files, your calendar or the shop.",
         "I can move, copy and write files, add and move calendar events, and order things from the shop.",
         "I run on your machine, offline. Ask me to sort files, plan your week or buy something in the shop.",
         "I am doing fine, thanks. What would you like to do with your files, calendar or shop?")
THANKS = ("You're welcome.", "Glad to help.", "Anytime.", "No problem.", "Happy to help. Anything else?")
GOODBYES = ("Goodbye!", "Bye! Come back any time.", "See you.", "Goodbye, have a good day.")


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


def small_talk(rng: random.Random, offered: dict | None = None) -> dict:
    """A short tool-less chat: a greeting, a question about the model, thanks or goodbye, and its answer in plain
    text. With `offered` (a gold record's system message and tools) the same chat happens with tools on offer, so
    the model learns that a greeting gets words, not a call, even when it could call something."""
    kind = rng.choice(("hello", "question", "question", "thanks", "bye"))
    if kind == "hello":
        user, answer = rng.choice(OPENERS), f"{rng.choice(HELLOS)} {rng.choice(ABOUT)}"
    elif kind == "question":
        opener = rng.choice(OPENERS + ("",) * 6)
        user, answer = (f"{opener}, " if opener else "") + rng.choice(QUESTIONS), rng.choice(ABOUT)
    elif kind == "thanks":
        user, answer = rng.choice(THANKS_USER), rng.choice(THANKS)
    else:
        user, answer = rng.choice(BYES), rng.choice(GOODBYES)
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    if offered is None:
        return {"messages": messages}
    system = [m for m in offered["messages"][:1] if m["role"] == "system"]
    return {"messages": system + messages, "tools": offered["tools"]}


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
    gold = list(records)  # half the small talk happens with one of these records' tools on offer
    records += [small_talk(rng, rng.choice(gold) if gold and i % 2 else None) for i in range(small_talk_records)]
    counts["small_talk"] = small_talk_records
    rng.shuffle(records)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts
