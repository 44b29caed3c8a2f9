"""The real Qwen vocabulary reproduces llama.cpp's own tokenizer test vectors, with Qwen3's added tokens."""
from tinygpt.runtime import vocab


def test_qwen_tokenizer_matches_llama_cpp_vectors_and_qwen3_ids():
    tok = vocab.qwen_tokenizer()
    gguf = vocab.qwen_gguf_path()
    inputs = gguf.with_name(gguf.name + ".inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = gguf.with_name(gguf.name + ".out").read_text(encoding="utf-8").split("\n")
    assert len(inputs) >= 40
    for text, want in zip(inputs, outputs):
        assert tok.encode(text, add_special_tokens=False).ids == [int(x) for x in want.split()], text
    for name, want_id in [("<|im_start|>", 151644), ("<|im_end|>", 151645), ("<tool_call>", 151657),
                          ("</tool_call>", 151658), ("<think>", 151667), ("</think>", 151668)]:
        assert tok.token_to_id(name) == want_id
    assert tok.encode("<tool_call>x</tool_call>").ids[0] == 151657


def test_small_bpe_round_trips_text_and_keeps_added_tokens_whole():
    tok = vocab.small_bpe_tokenizer()
    text = "Déjà vu: ls -la → 3 files\n\t{\"name\": \"cat\"}"
    assert tok.decode(tok.encode(text).ids) == text
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>").ids
    assert ids[0] == tok.token_to_id("<|im_start|>") and ids[-1] == tok.token_to_id("<|im_end|>")


def test_llama3_tokenizer_matches_llama_cpp_vectors_and_llama31_names():
    tok = vocab.llama3_tokenizer()
    gguf = vocab.vocab_files("llama3")[0]
    inputs = gguf.with_name(gguf.name + ".inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = gguf.with_name(gguf.name + ".out").read_text(encoding="utf-8").split("\n")
    assert len(inputs) >= 40
    for text, want in zip(inputs, outputs):
        assert tok.encode(text, add_special_tokens=False).ids == [int(x) for x in want.split()], text
    for name, want_id in [("<|begin_of_text|>", 128000), ("<|start_header_id|>", 128006), ("<|eom_id|>", 128008),
                          ("<|eot_id|>", 128009), ("<|python_tag|>", 128010), ("<|reserved_special_token_3|>", 128011),
                          ("<|reserved_special_token_247|>", 128255)]:
        assert tok.token_to_id(name) == want_id
    assert tok.get_vocab_size() == vocab.LLAMA3_VOCAB_SIZE


def _rank_bpe(ranks: dict[bytes, int], piece: bytes) -> list[int]:
    """tiktoken's byte-pair encoding of one pre-token: merge the lowest-ranked adjacent pair until none is left."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        pairs = [(ranks.get(a + b, 1 << 62), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 62:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def test_mistral_tokenizer_is_tekken_byte_pair_encoding_with_its_control_tokens():
    import base64
    import json

    import regex

    tok = vocab.mistral_tokenizer()
    data = json.loads(vocab.vocab_files("mistral")[0].read_text(encoding="utf-8"))
    n_special = data["config"]["default_num_special_tokens"]
    ranks = {base64.b64decode(t["token_bytes"]): t["rank"]
             for t in data["vocab"][: data["config"]["default_vocab_size"] - n_special]}
    split = regex.compile(data["config"]["pattern"])
    texts = ["Hello, world!", " déjà vu — naïve café", "def f(x):\n    return x ** 2  # 日本語",
             '{"name": "ls", "arguments": {"a": true}}', "  \t\n\nSPACES   and\r\nlines", "🦙.cpp w048 7tuijk", "ÄÖÜ ßẞ"]
    for text in texts:
        want = [r + n_special for piece in split.findall(text) for r in _rank_bpe(ranks, piece.encode())]
        assert tok.encode(text, add_special_tokens=False).ids == want, text
        assert tok.decode(want) == text
    assert [tok.token_to_id(t) for t in ("<unk>", "<s>", "</s>", "[INST]", "[TOOL_CALLS]", "[TOOL_RESULTS]")] == \
        [0, 1, 2, 3, 9, 7]
    assert tok.token_to_id("<SPECIAL_999>") == 999 and tok.get_vocab_size() == vocab.MISTRAL_VOCAB_SIZE
    assert tok.encode("[TOOL_CALLS][", add_special_tokens=False).ids[0] == 9
