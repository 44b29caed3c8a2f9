"""Score a model on held-out chats (chat_suite.py): at every recorded assistant turn, the model's own next turn.

For each chat and each of its assistant turns, the history before that turn — the recorded one, whatever the
model said earlier (teacher forcing) — is rendered with the model's chat template and the chat's tools, as
`tinygpt serve` renders a client's request, and the model answers greedily under the tool grammar. A turn passes
when
  - the reference called tools: the model's calls equal them as a multiset of (name, arguments), the arguments
    compared as JSON values (key order, spacing and 1 vs 1.0 do not matter; the text beside the calls does not
    count);
  - the reference answered in text: the model answers in text (no call) and its text equals the reference's
    after whitespace is collapsed and case folded.
Exact text is strict on purpose: it is the one text measure that is a pass/fail of the model's own answer, which
the gate's paired tests need (a per-token loss of the reference is a different thing: how likely the model finds
the answer, not whether it gives it). For tool calls and short formulaic answers it is the right bar; on long
free-form answers both arms will score near 0 and the gate will not ship, which is the honest outcome. Each
turn's token budget is the reference's length plus SLACK: a longer reply can no longer match.
A chat passes when every turn passes (score: the share of turns passed), as a tool-world task passes when every
turn does; each chat is one result row in the evals row schema (results.py), so the gate pairs base and
specialist per chat exactly as it does per task. Each turn's expected and given answer are kept in
<run_id>.turns.jsonl beside the rows. It does not load models or decide verdicts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Generator

from tinygpt.evals.chat_suite import ChatSuite, Reference
from tinygpt.evals.results import ResultRow, ResultWriter, RunManifest, new_run_id
from tinygpt.evals.runner import RunSettings, _interleave, episode_seed, identity
from tinygpt.evals.suite import Task

SLACK = 16  # tokens a reply may run past the reference's length before it is cut off
TURNS_SUFFIX = ".turns.jsonl"
SCORING = "per-turn replay: calls exact as JSON, text exact after whitespace/case normalisation"


def normal_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def normal_value(value):
    """A JSON value with integral floats as ints, so 1 and 1.0 compare and print alike."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normal_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal_value(v) for v in value]
    return value


def normal_calls(calls) -> list[str]:
    """Calls [(name, arguments)] as a sorted list of canonical JSON strings (a multiset)."""
    return sorted(json.dumps([n, normal_value(a)], sort_keys=True, ensure_ascii=False) for n, a in calls)


def judge(reference: Reference, parsed) -> tuple[bool, str]:
    """(passed, why) for the model's parsed reply to one reference turn."""
    got = [(c.name, dict(c.arguments)) for c in parsed.calls]
    if parsed.truncated:
        return False, "the reply's tool call was cut off by the token budget"
    if reference.calls is not None:
        if normal_calls(got) == normal_calls(reference.calls):
            return True, "ok"
        said = ", ".join(normal_calls(got)) or (f"an unusable call ({parsed.error})" if parsed.error else
                                               f"a text answer {parsed.content[:60]!r}")
        return False, f"expected {', '.join(normal_calls(reference.calls))}; got {said}"
    if got or parsed.error:
        return False, f"expected a text answer; got {', '.join(normal_calls(got)) or parsed.error}"
    if normal_text(parsed.content) == normal_text(reference.text):
        return True, "ok"
    return False, f"the answer differs from the reference: {parsed.content[:80]!r}"


def chat_steps(engine, task: Task, settings: RunSettings, *, run_id: str, model: str
               ) -> Generator[None, None, tuple[ResultRow, list[dict]]]:
    """One chat's turns, scored, as a generator that yields after every sampled token (so several chats' calls
    meet in the engine's scheduler) and returns (its result row, its turns' details)."""
    from tinygpt.runtime.grammar import compile_tools
    from tinygpt.runtime.sampling import SamplingParams
    from tinygpt.runtime.tool_calls import parse_tool_calls

    chat = task.data
    seed = episode_seed(settings.seed, task.id, 0)
    grammar = compile_tools(engine.tokenizer, chat.tools, backend=settings.grammar_backend)
    started, details, prompt_tokens, output_tokens, end = time.perf_counter(), [], 0, 0, "answer"
    for k, ref in enumerate(chat.references):
        prompt = engine.encode_chat(chat.messages[: ref.index], chat.tools or None, add_generation_prompt=True)
        whole = engine.encode_chat(chat.messages[: ref.index + 1], chat.tools or None, add_generation_prompt=False)
        params = SamplingParams(temperature=0.0, max_tokens=max(1, len(whole) - len(prompt)) + SLACK, seed=seed)
        gen = engine.stream(prompt, params, logits_processors=[grammar.processor()])
        try:
            for _ in gen:
                yield
        finally:
            gen.close()
        r = gen.result
        parsed = parse_tool_calls(r.output_ids, engine.tokenizer, chat.tools, tool_format=grammar.format,
                                  finish_reason=r.finish_reason)
        passed, why = judge(ref, parsed)
        end = "truncated_call" if parsed.truncated else ("answer" if r.finish_reason == "stop" else "length")
        prompt_tokens, output_tokens = prompt_tokens + len(prompt), output_tokens + len(r.output_ids)
        details.append({"task_id": task.id, "turn": k, "message": ref.index, "passed": passed, "reason": why,
                        "expected": {"calls": [list(c) for c in ref.calls]} if ref.calls is not None else
                        {"content": ref.text},
                        "got": {"content": parsed.content, "calls": [[c.name, dict(c.arguments)] for c in parsed.calls],
                                "error": parsed.error, "finish": r.finish_reason}})
    failed = next((d for d in details if not d["passed"]), None)
    fingerprint, base, adapter = identity(engine)
    row = ResultRow(
        run_id=run_id, suite=task.suite, split=task.split, category=task.category, task_id=task.id, pass_index=0,
        model=model, model_fingerprint=fingerprint, base_fingerprint=base, adapter_fingerprint=adapter,
        policy="model", passed=failed is None, score=sum(d["passed"] for d in details) / len(details),
        steps=len(details), prompt_tokens=prompt_tokens, output_tokens=output_tokens,
        latency_s=time.perf_counter() - started, seed=seed, finished_at=time.time(), end=end,
        reason=f"turn {failed['turn']} (messages[{failed['message']}]): {failed['reason']}" if failed else "ok")
    return row, details


def run_chats(engine, suite: ChatSuite, tasks: list[Task], settings: RunSettings, out_dir: str | Path, *,
              model: str, split: str, on_row: Callable[[ResultRow], None] | None = None,
              remote=None) -> tuple[RunManifest, list[ResultRow]]:
    """Score `engine` on every chat of `tasks`, `settings.in_flight` at once (runner.run_suite's surface: rows to
    out_dir/<run_id>.results.jsonl as chats finish, the manifest "complete" once all are); returns (manifest,
    rows in task order)."""
    if engine is None or remote is not None:
        raise ValueError("held-out chats are scored on a local model")
    if settings.passes != 1 or settings.policy != "model":
        raise ValueError("held-out chats are scored greedily, one pass, by the model itself")
    out_dir = Path(out_dir)
    run_id = new_run_id(suite.NAME, split, model)
    manifest = RunManifest(
        run_id=run_id, status="running", suite=suite.NAME, split=split, model=model,
        model_fingerprint=identity(engine)[0], policy="model", passes=1, tasks=len(tasks), started_at=time.time(),
        settings={"scoring": SCORING, "slack_tokens": SLACK, "temperature": 0.0, "seed": settings.seed,
                  "in_flight": settings.in_flight, "grammar_backend": settings.grammar_backend,
                  "source": suite.source})
    rows: list[ResultRow] = []
    with ResultWriter(out_dir, manifest) as writer, open(out_dir / f"{run_id}{TURNS_SUFFIX}", "x",
                                                         encoding="utf-8") as turns:
        def done(result: tuple[ResultRow, list[dict]]) -> None:
            row, details = result
            turns.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in details))
            turns.flush()
            writer.add(row)
            rows.append(row)
            if on_row is not None:
                on_row(row)

        _interleave((chat_steps(engine, t, settings, run_id=run_id, model=model) for t in tasks),
                    settings.in_flight, done)
        writer.complete()
    order = {t.id: i for i, t in enumerate(tasks)}
    return writer.manifest, sorted(rows, key=lambda r: order[r.task_id])
