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
