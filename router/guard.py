"""`GuardedPolicy`: a remote backend's policy behind the guard rails: redaction, retries with backoff, fallback,
cost.

Outgoing text passes through the backend's redactor. A failure before any text arrived is retried when it may
pass (a timeout, no connection, 429, 5xx: `RemoteError.retryable`), after an exponential backoff with jitter
(`base_s * 2**n`, capped at `max_s`, times a random factor in [0.5, 1]); a 4xx or an invalid reply is not
retried. When every attempt failed, the `fallback` policy (a local one: another configured backend, e.g. a
`tinygpt serve` on 127.0.0.1) answers instead, with a note saying why on the reply's usage; without a fallback
the last error ends the turn. A failure after text was streamed is passed on as it is (the text is already out).
The reply's usage gets the backend's name, the attempts and the cost from the price table.
Not here: the wire (the policies), reading backends.toml (backends.py).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import msgspec

from tinygpt.router.prices import Price, cost_usd, price_for
from tinygpt.router.redact import Redactor, redact_messages
from tinygpt.runtime.message_policy import AssistantReply, MessagePolicy, RemoteError, Reply
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.traces.atraj import Usage


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry n (0-based): base_s * 2**n, capped at max_s, times a factor in [0.5, 1]."""

    base_s: float = 0.5
    max_s: float = 8.0

    def delay(self, n: int, rng: random.Random) -> float:
        return min(self.max_s, self.base_s * 2 ** n) * (0.5 + rng.random() / 2)


class GuardedPolicy:
    """`primary` (a MessagePolicy) as the backend `name`, with up to `retries` more attempts, then `fallback`."""

    def __init__(self, name: str, primary: MessagePolicy, *, retries: int = 2, backoff: Backoff = Backoff(),
                 fallback: MessagePolicy | None = None, redactor: Redactor | None = None,
                 prices: dict[str, Price] | None = None, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.name, self.primary, self.retries, self.backoff = name, primary, retries, backoff
        self.fallback, self.redactor, self.prices = fallback, redactor, prices or {}
        self.sleep, self.rng = sleep, rng or random.Random()
        self.model, self.fingerprint = primary.model, primary.fingerprint
        self.address = getattr(primary, "address", name)

    def reply(self, messages: list[dict], tools: list[dict], *, tool_choice: str | dict,
              parallel_tool_calls: bool, params: SamplingParams) -> Reply:
        ask = dict(tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel_tool_calls, params=params)
        return Reply(lambda reply: self._run(reply, messages, ask))

    def _run(self, reply: Reply, messages: list[dict], ask: dict) -> Iterator[str]:
        outgoing = redact_messages(messages, self.redactor) if self.redactor else messages
        failures: list[RemoteError] = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff.delay(attempt - 1, self.rng))
            inner = self.primary.reply(outgoing, ask["tools"], tool_choice=ask["tool_choice"],
                                       parallel_tool_calls=ask["parallel_tool_calls"], params=ask["params"])
            streamed = False
            try:
                for text in inner:
                    streamed = True
                    yield text
            except RemoteError as exc:
                if streamed:
                    raise
                failures.append(exc)
                if not exc.retryable:
                    break
                continue
            finally:
                inner.close()
            reply.result = self._costed(inner.result, attempt + 1)
            return
        yield from self._fall_back(reply, messages, ask, failures)

    def _fall_back(self, reply: Reply, messages: list[dict], ask: dict, failures: list[RemoteError]):
        n = len(failures)
        why = f"{failures[-1]} ({n} attempt{'s' if n != 1 else ''})"
        if self.fallback is None:  # the error says where it went wrong; a lone attempt needs no count
            raise RemoteError(why if n > 1 else str(failures[-1]), retryable=failures[-1].retryable)
        note = f"backend {self.name} failed: {why}; answered by the fallback {self.fallback.model}"
        reply.note = note  # known before the fallback's first text: a stream's headers can say it
        inner = self.fallback.reply(messages, ask["tools"], tool_choice=ask["tool_choice"],
                                    parallel_tool_calls=ask["parallel_tool_calls"], params=ask["params"])
        try:
            yield from inner
        except RemoteError as exc:
            raise RemoteError(f"{note}, which failed too: {exc}") from None
        finally:
            inner.close()
        result = inner.result
        used = result.usage or Usage(backend=getattr(self.fallback, "name", self.fallback.model))
        reply.result = replace(result, usage=msgspec.structs.replace(used, attempts=n + used.attempts, note=note))

    def _costed(self, result: AssistantReply, attempts: int) -> AssistantReply:
        """`result` with its usage naming the backend, the attempts and the cost from the price table."""
        used = result.usage or Usage(backend=self.name)
        price = price_for(self.prices, result.model, self.model)
        return replace(result, usage=msgspec.structs.replace(used, backend=self.name, attempts=attempts,
                                             cost_usd=cost_usd(price, used.input_tokens, used.output_tokens)))
