"""A tiny random-init model learns the synthetic tool-call task from recorded episodes, CI-sized.

48 recorded episodes (trainer_task.py; rows from traces-to-data) train a rank-16 LoRA for 200 steps of 8 rows.
Then the 16 held-out prompts (template x city pairs never recorded) are run greedily through tinygpt's runtime
Engine with the adapter loaded as a specialist, and the first call is compared exactly (tool name and
arguments). Measured on the 2-core dev machine: 0/16 before; after 90 / 120 / 150 / 200 steps 5 / 15 / 15 / 16
of 16 (200 steps: ~15 s of CPU). The test asserts 0 before and at least 12/16 (75%) after 200 steps.
"""
import json

import pytest

from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.runtime.tool_calls import parse_tool_calls
from tinygpt.runtime.transcript import Transcript
from tinygpt.trainer import sft
from tinygpt.trainer.config import resolve
from trainer_task import TOOLS, task_items

HELD_OUT = [item for item in task_items() if item[3]]


def exact_calls(engine: Engine) -> int:
    """How many held-out prompts get exactly the right first tool call under greedy decoding."""
    right = 0
    for tool, prompt, city, _ in HELD_OUT:
        t = Transcript(engine=engine, tools=None)
        t.add_messages({"role": "user", "content": prompt})
        r = engine.generate(t.ids, SamplingParams(temperature=0.0, max_tokens=40))
        parsed = parse_tool_calls(r.output_ids, engine.tokenizer, TOOLS, finish_reason=r.finish_reason)
        right += [(c.name, c.arguments) for c in parsed.calls] == [(tool, {"city": city})]
    return right


def test_a_tiny_model_learns_held_out_tool_calls(tiny_model_dir, task_data, tmp_path):
    assert len(HELD_OUT) == 16
    base = Engine(load(str(tiny_model_dir)))
    assert exact_calls(base) == 0
    cfg = resolve({"model": str(tiny_model_dir), "data": str(task_data / "data" / "rows.jsonl"),
                   "out": str(tmp_path / "run"), "rank": 16, "learning_rate": 1e-3, "batch_size": 8, "iters": 200,
                   "valid_fraction": 0.0, "save_every": 0, "seed": 0})
    summary = sft.run(cfg)
    assert summary["status"] == "complete" and summary["final_loss"] < 0.8 < summary["first_loss"]
    specialist = Engine(load(str(tiny_model_dir), adapter_path=summary["adapter"]))
    right = exact_calls(specialist)
    assert right >= 12, f"held-out exact calls {right}/16"
    config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["lora_parameters"]["rank"] == 16
