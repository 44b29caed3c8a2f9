"""Shared fixtures. Importing tinygpt first makes MLX bind to OpenBLAS (see tinygpt/blas.py)."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny test models decode ~3x faster on one BLAS thread

import tinygpt  # noqa: E402,F401  (must precede any mlx import)

import pytest
from hypothesis import settings

# CI runs each property test on the same examples every time (a red CI is then a real, reproducible failure);
# locally hypothesis keeps exploring new inputs.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-init tiny Qwen3 model with the small BPE vocabulary (seed 0)."""
    from tinygpt.runtime.presets import InitSpec, init_model

    return init_model(tmp_path_factory.mktemp("models") / "tiny", InitSpec(preset="tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    return Engine(load(str(tiny_model_dir)))


class Forced:
    """A logits processor that makes the engine sample exactly `ids` then EOS (any sampler); with `interrupt_at`,
    it raises KeyboardInterrupt at that step instead, as a Ctrl-C landing mid-answer."""

    def __init__(self, ids, eos, interrupt_at=None):
        self.ids, self.n, self.interrupt_at = list(ids) + [eos], 0, interrupt_at

    def __call__(self, tokens, logits):
        import mlx.core as mx

        if self.n == self.interrupt_at:
            raise KeyboardInterrupt
        want = self.ids[min(self.n, len(self.ids) - 1)]
        self.n += 1
        mask = mx.full(logits.shape, -1e9)
        mask[..., want] = 0.0
        return logits + mask


class ForcedPolicy:
    """An agent policy that runs the real engine on the real session but forces what it samples: each reply is a
    text (encoded once), a tool call (world_tasks.call, written in the model's tool format), a list of ids, or ("interrupt", text, n): Ctrl-C after n sampled tokens. `generations`
    keeps each call's Generation, whose `result` says what the engine consumed (None when interrupted)."""

    def __init__(self, engine, replies):
        self.engine, self.replies, self.generations = engine, list(replies), []

    def stream(self, ids, params, session, processor):
        reply, interrupt_at = self.replies.pop(0), None
        if isinstance(reply, tuple):
            _, reply, interrupt_at = reply
        if hasattr(reply, "arguments"):  # a teacher step that calls a tool (evals.world_tasks.Call)
            from tinygpt.runtime import tool_formats

            fmt = tool_formats.resolve(None, self.engine.tokenizer)
            reply = fmt.render([(reply.name, reply.arguments, f"c{len(self.generations):08d}")])
        out = self.engine.encode(reply) if isinstance(reply, str) else list(reply)
        forced = Forced(out, self.engine.tokenizer.eos_token_id, interrupt_at)
        gen = self.engine.stream(ids, params, session=session, logits_processors=[forced])
        self.generations.append(gen)
        return gen


@pytest.fixture(scope="session")
def forced_policy():
    """The ForcedPolicy class (see above)."""
    return ForcedPolicy


@pytest.fixture
def scripted(monkeypatch):
    """`scripted(lines)` makes input() return `lines` in order (an exception item is raised), then EOFError."""
    import builtins

    def feed(lines):
        items = iter(lines)

        def fake_input(prompt=""):
            try:
                line = next(items)
            except StopIteration:
                raise EOFError from None
            if isinstance(line, BaseException):
                raise line
            return line

        monkeypatch.setattr(builtins, "input", fake_input)

    return feed


ROUTED_DOMAINS = {"fileops": ("ls", "cd", "mv", "cat"), "math": ("add", "multiply"), "weather": ("forecast",)}


@pytest.fixture(scope="session")
def saved_router(tmp_path_factory):
    """`saved_router(settings)`: the directory of a router trained (fast, deterministic) on requests whose tools
    say the domain (ROUTED_DOMAINS; the text is filler), saved with `settings` (router/settings.py)."""
    import random

    from tinygpt.router.data import Example
    from tinygpt.router.features import Request
    from tinygpt.router.model import save
    from tinygpt.router.train import TrainOptions, train

    rng = random.Random(0)
    filler = [f"word{i}" for i in range(300)]
    examples = [Example(Request(" ".join(rng.choice(filler) for _ in range(8)),
                                tuple(rng.sample(tools, rng.randint(1, len(tools))))), domain, f"{domain}-{i}")
                for domain, tools in ROUTED_DOMAINS.items() for i in range(40)]
    model = train(examples, TrainOptions(dim=2**12, steps=120))

    def make(settings):
        import msgspec

        from tinygpt.router.model import RouterModel

        meta = msgspec.structs.replace(model.meta, settings=settings)
        out = tmp_path_factory.mktemp("router")
        save(RouterModel(domains=model.domains, weights=model.weights, bias=model.bias,
                         temperature=model.temperature, meta=meta), out)
        return out

    return make
