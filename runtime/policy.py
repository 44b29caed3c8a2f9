"""Who writes the assistant's tokens in the agent loop: the engine (a model), or a script.

`EnginePolicy` generates on the session's persistent KV under the grammar's logits processor.
`ScriptedPolicy` replays given assistant texts as if sampled (encoded once, EOS appended, logprob 0): it drives
the same loop, transcript and recorder deterministically (tests; a scripted teacher for the quickstart).
"""
from __future__ import annotations

from typing import Iterator, Protocol

from tinygpt.runtime.engine import Engine, Generation, GenerationResult, TokenEvent
from tinygpt.runtime.sampling import SamplingParams


class Policy(Protocol):
    def stream(self, ids: list[int], params: SamplingParams, session, processor) -> Generation: ...


class EnginePolicy:
    """Sample from the model."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def stream(self, ids, params, session, processor) -> Generation:
        return self.engine.stream(ids, params, session=session,
                                  logits_processors=[processor] if processor is not None else None)


class ScriptedPolicy:
    """Emit `replies` in order, one per model step; raises when the script runs out (a test bug)."""

    def __init__(self, engine: Engine, replies: list[str]):
        self.engine = engine
        self.replies = list(replies)

    def stream(self, ids, params, session, processor) -> Generation:
        if not self.replies:
            raise RuntimeError("ScriptedPolicy has no replies left")
        text = self.replies.pop(0)
        eos = self.engine.tokenizer.eos_token_id
        out = self.engine.encode(text) + [eos]
        return Generation(lambda gen: self._events(gen, ids, out))

    def _events(self, gen: Generation, ids: list[int], out: list[int]) -> Iterator[TokenEvent]:
        detok = self.engine.tokenizer.detokenizer
        for t in out[:-1]:
            detok.add_token(t)
            yield TokenEvent(t, 0.0, detok.last_segment)
        detok.finalize()
        yield TokenEvent(out[-1], 0.0, detok.last_segment)
        gen.result = GenerationResult(
            prompt_ids=list(ids), cached_tokens=0, output_ids=out, logprobs=[0.0] * len(out),
            top_logprobs=[[] for _ in out], text=detok.text, finish_reason="stop", ttft_s=0.0, decode_s=0.0,
            prefill_tokens=0)
