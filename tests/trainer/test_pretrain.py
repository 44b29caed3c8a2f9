"""Pretraining from scratch: a BPE tokenizer trained on a corpus (round trips, special tokens, the ChatML template
with tools that the runtime reads as Hermes), and a tiny random-init model trained on it that really learns: the
loss falls from ~ln(vocabulary) to near zero and greedy decoding continues the memorized text; the output is an
mlx-lm model directory that mlx-lm and tinygpt's runtime load and decode identically."""
import hashlib
import json

import numpy as np
import pytest
from pretrain_task import CHAT, CLOCK_TOOL, REPEATED

from tinygpt.runtime.presets import PRESETS
from tinygpt.trainer.config import read_toml
from tinygpt.trainer.pretrain_config import PretrainConfig, resolve


def test_the_tokenizer_round_trips_text_and_keeps_special_tokens_whole(pretrain_tokenizer):
    from transformers import AutoTokenizer

    from tinygpt.runtime.vocab import SMALL_ADDED

    path, report = pretrain_tokenizer
    tok = AutoTokenizer.from_pretrained(str(path))
    assert len(tok) == report["vocab_size"] == 320 and report["documents"] == 1 + 22
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    for text in ["the cat sat on the mat.", "Grüße, 東京! tabs\tand\nnewlines  ", "x = {\"a\": [1, 2]}", "🙂 ok"]:
        assert tok.decode(tok.encode(text)) == text
    for special, _ in SMALL_ADDED:
        ids = tok.encode(f"a{special}b")
        assert tok.convert_ids_to_tokens(ids).count(special) == 1 and tok.decode(ids) == f"a{special}b"
    assert len(tok.encode("the cat sat on the mat.")) < len("the cat sat on the mat.") / 2  # merges were learned
    meta = json.loads((path / "tinygpt.json").read_text())
    assert meta["created_by"] == "tinygpt train-tokenizer" and "tokenizer.json" in meta["files"]


def test_the_chat_template_renders_tools_and_the_runtime_picks_hermes(pretrain_tokenizer):
    from transformers import AutoTokenizer

    from tinygpt.runtime.tool_formats import detect

    tok = AutoTokenizer.from_pretrained(str(pretrain_tokenizer[0]))
    text = tok.apply_chat_template(CHAT, tools=[CLOCK_TOOL], tokenize=False, add_generation_prompt=False)
    assert text.startswith("<|im_start|>system\n# Tools") and '"name": "clock"' in text.split("\n</tools>")[0]
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "clock", "arguments": {"city": "Rome"}}\n</tool_call>' \
           '<|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\n12:00\n</tool_response><|im_end|>" in text
    assert detect(tok.chat_template).name == "hermes"
    ids = tok.encode(text)
    assert ids.count(tok.convert_tokens_to_ids("<tool_call>")) == text.count("<tool_call>") == 3  # one id each
    assert tok.decode(ids) == text


def test_chat_and_completion_records_are_pretrained_as_their_rendered_text(pretrain_corpus, pretrain_tokenizer):
    from transformers import AutoTokenizer

    from tinygpt.trainer.corpus import corpus_files, documents
    from tinygpt.trainer.packing import tokenize
    from tinygpt.trainer.pretrain import load_corpus

    tok = AutoTokenizer.from_pretrained(str(pretrain_tokenizer[0]))
    sep = tok.convert_tokens_to_ids("<|endoftext|>")
    files = corpus_files([str(pretrain_corpus / "docs.jsonl")])
    stream, count = tokenize(documents(files, tok.chat_template), tok, sep)
    docs = tok.decode(stream.tolist()).split("<|endoftext|>")
    assert count == 22 and docs[:2] == ["note 0: the dog and the cat are friends."] * 1 + [
        "note 1: the dog and the cat are friends."]
    assert docs[20] == tok.apply_chat_template(CHAT, tools=[CLOCK_TOOL], tokenize=False)
    assert docs[21] == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi there<|im_end|>\n"
    data = load_corpus(resolve({"data": [str(files[0])], "seq_length": 16, "valid_fraction": 0.0}), tok)
    assert data.report["documents"] == 22 and data.report["separator"] == sep
    assert data.report["tokens"] == len(stream) == 1 + 16 * len(data.train) + data.report["dropped_tokens"]
    assert all(len(ex) == 17 and ex.mask.all() for ex in data.train)  # windows of seq_length + 1, all trained
    packed = np.concatenate([data.train[0].ids[:1]] + [ex.ids[1:] for ex in data.train])  # overlapping by one
    assert np.array_equal(packed, stream[: len(packed)])


def test_a_long_text_file_is_read_in_pieces_that_encode_to_the_whole_texts_ids(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from tinygpt.trainer import corpus
    from tinygpt.trainer.packing import tokenize
    from tinygpt.trainer.tokenizer_train import train_tokenizer

    text = "".join(f"line {i}: the cat sat.\n" + ("\n  indented, \t\n\n" if i % 7 == 0 else "") for i in range(200))
    path = tmp_path / "long.txt"
    path.write_text(text + "  the end \n\n")
    # a vocabulary with merges across newlines ("\n\n", ".\n\n"): a cut at any newline would change the ids
    train_tokenizer([str(path)], str(tmp_path / "tok"), vocab_size=300)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert "ĊĊ" in tok.get_vocab()
    monkeypatch.setattr(corpus, "CHUNK", 50)
    docs = list(corpus.documents([path], None))
    assert len(docs) > 20 and "".join(d.text for d in docs) == path.read_text()
    assert [d.part for d in docs] == list(range(len(docs))) and [d.last for d in docs] == [False] * (len(docs) - 1) + [
        True] and sum(d.size for d in docs) == path.stat().st_size
    sep = tok.convert_tokens_to_ids("<|endoftext|>")
    stream, count = tokenize(docs, tok, sep)
    assert count == 1 and stream.tolist() == tok.encode(path.read_text()) + [sep]


def test_pretraining_learns_the_corpus_and_greedy_decoding_continues_it(pretrained, pretrain_tokenizer):
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load
    from tinygpt.runtime.sampling import SamplingParams

    run, summary = pretrained
    assert summary["status"] == "complete" and summary["step"] == 60
    assert summary["first_loss"] > 5.0  # ~ln(320) = 5.77: random weights
    assert summary["final_loss"] < 0.15 and summary["val_loss"] < 0.15
    vals = [m["val_loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val_loss" in m]
    assert len(vals) == 4 and vals[0] > 5.0 and vals[-1] < vals[1] < vals[0]
    engine = Engine(load(str(run / "model")))
    prompt = engine.tokenizer.encode("the cat sat")
    out = engine.generate(prompt, SamplingParams(temperature=0.0, max_tokens=24)).output_ids
    continuation = (REPEATED * 2)[len("the cat sat"):]  # " on the mat. the dog ate the bone. the cat sat ..."
    assert engine.tokenizer.decode(out).startswith(continuation[:56])
    assert engine.loaded.tokenizer_hash == load_hash(pretrain_tokenizer[0])  # the tokenizer's files, byte for byte


def load_hash(tokenizer_dir):
    """The runtime's tokenizer hash of a directory's tokenizer files (runtime/models.py's rule)."""
    files = [tokenizer_dir / n for n in ("tokenizer.json", "tokenizer_config.json")]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def test_mlx_lm_loads_the_model_and_decodes_the_engines_greedy_ids(pretrained):
    from mlx_lm import load as mlx_load, stream_generate

    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load
    from tinygpt.runtime.sampling import SamplingParams

    model_dir = pretrained[0] / "model"
    engine = Engine(load(str(model_dir)))
    for text in ("the dog", "the mat. the"):
        prompt = engine.tokenizer.encode(text)
        ours = engine.generate(prompt, SamplingParams(temperature=0.0, max_tokens=20)).output_ids
        model, tokenizer = mlx_load(str(model_dir))
        theirs = [r.token for r in stream_generate(model, tokenizer, prompt=prompt, max_tokens=20)]
        assert ours == theirs and len(ours) == 20


def test_a_llama_model_pretrains_and_loads_in_mlx_lm_and_the_runtime(pretrain_corpus, pretrain_tokenizer, tmp_path):
    from mlx_lm import load as mlx_load, stream_generate

    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load
    from tinygpt.runtime.sampling import SamplingParams
    from tinygpt.trainer import pretrain

    cfg = resolve({"data": [str(pretrain_corpus / "cats.txt")], "tokenizer": str(pretrain_tokenizer[0]),
                   "out": str(tmp_path / "run"), "arch": "llama", "preset": "tiny", "layers": 1,
                   "tie_embeddings": False, "seq_length": 32, "iters": 20, "warmup": 2, "learning_rate": 3e-3,
                   "save_every": 0})
    summary = pretrain.run(cfg)
    assert summary["status"] == "complete" and summary["final_loss"] < summary["first_loss"] / 3
    model_dir = tmp_path / "run" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["tie_word_embeddings"]) == ("llama", 1, False)
    engine = Engine(load(str(model_dir)))
    prompt = engine.tokenizer.encode("the dog")
    ours = engine.generate(prompt, SamplingParams(temperature=0.0, max_tokens=12)).output_ids
    model, tokenizer = mlx_load(str(model_dir))
    assert ours == [r.token for r in stream_generate(model, tokenizer, prompt=prompt, max_tokens=12)]


def test_the_run_directory_holds_a_standalone_model_and_the_run_files(pretrained, pretrain_tokenizer):
    run, summary = pretrained
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "data-report.json", "loss.png",
                                                    "metrics.jsonl", "model", "run.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000040", "step-0000060"]
    model = run / "model"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (model / name).read_bytes() == (pretrain_tokenizer[0] / name).read_bytes()
    config = json.loads((model / "config.json").read_text())
    im_end, eot = (json.loads((model / "tokenizer.json").read_text())["added_tokens"][i]["id"] for i in (2, 0))
    assert config["model_type"] == "qwen3" and config["vocab_size"] == 320 and config["eos_token_id"] == [im_end, eot]
    assert {k: config[k] for k in PRESETS["tiny"]} == PRESETS["tiny"] and config["max_position_embeddings"] == 32
    meta = json.loads((model / "tinygpt.json").read_text())
    assert meta["trained_by"] == "tinygpt pretrain" and "model.safetensors" in meta["files"]
    marker = json.loads((run / "run.json").read_text())
    assert marker["kind"] == "pretrain" and marker["status"] == "complete"
    saved = read_toml(run / "config.toml", PretrainConfig)
    assert saved["schedule"] == "wsd" and saved["optimizer"] == "adamw" and saved["seq_length"] == 32
    assert summary["total_params"] == summary["trainable_params"] > 0 and summary["tokens_per_s"] > 0
    steps = [m for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    last_batch = summary["train_examples"] % 8 or 8  # an epoch's last batch holds the remaining windows
    assert {m["tokens"] for m in steps} == {8 * 32, last_batch * 32}  # every position of every window trained
    assert summary["tokens_trained"] == sum(m["tokens"] for m in steps)


def test_explicit_dimensions_override_the_preset(pretrain_tokenizer):
    from transformers import AutoTokenizer

    from tinygpt.trainer.pretrain import model_config

    tok = AutoTokenizer.from_pretrained(str(pretrain_tokenizer[0]))
    cfg = resolve({"arch": "llama", "layers": 3, "hidden_size": 96, "heads": 6, "kv_heads": 2, "seq_length": 64})
    c = model_config(cfg, tok)
    assert (c["model_type"], c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
            c["num_key_value_heads"], c["head_dim"], c["intermediate_size"]) == ("llama", 3, 96, 6, 2, 16, 288)
    assert c["rope_theta"] == 500000.0 and c["max_position_embeddings"] == 64


@pytest.mark.parametrize("flags, says", [
    ({"seq_length": 128, "max_position_embeddings": 64}, "--seq-length 128 is longer than the model's context"),
    ({"heads": 6, "kv_heads": 4}, "--kv-heads 4 must divide --heads 6"),
])
def test_shapes_that_cannot_be_built_are_refused(flags, says):
    from tinygpt.trainer.errors import TrainError

    with pytest.raises(TrainError, match=says):
        resolve(flags)
