"""`tinygpt train-tokenizer` and `tinygpt pretrain` on the command line: one clear line (exit 2) for every bad
input with nothing written and nothing of the user's touched, the resolved config printed, --json, --register,
and help that teaches with examples."""
import json

import pytest

from tinygpt import cli


def run(capsys, *args):
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code, err):
    assert code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.fixture
def corpora(tmp_path):
    (tmp_path / "blank.txt").write_text("  \n\n ")
    (tmp_path / "table.csv").write_text("a,b\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    (tmp_path / "odd.jsonl").write_text('{"title": "no text field"}\n')
    (tmp_path / "short.txt").write_text("just a few words")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    return tmp_path


@pytest.mark.parametrize("args, says", [
    (["{d}/missing.txt", "--vocab-size", "300"], "corpus {d}/missing.txt: no such file or directory"),
    (["{d}/table.csv", "--vocab-size", "300"], "not a .txt, .md or .jsonl file"),
    (["{d}/blank.txt", "--vocab-size", "300"], "corpus {d}/blank.txt: no text in it"),
    (["{d}/broken.jsonl", "--vocab-size", "300"], "{d}/broken.jsonl:2: not valid JSON"),
    (["{d}/odd.jsonl", "--vocab-size", "300"], "{d}/odd.jsonl:1: a record needs \"text\""),
    (["{d}/short.txt", "--vocab-size", "100"], "--vocab-size 100 is too small: the vocabulary holds the 256 byte "
                                               "tokens and 9 special tokens"),
])
def test_train_tokenizer_refuses_bad_input_and_writes_nothing(capsys, corpora, args, says):
    out = corpora / "tok"
    code, _, err = run(capsys, "train-tokenizer", *[a.format(d=corpora) for a in args], "--out", str(out))
    assert says.format(d=corpora) in error_line(code, err)
    assert not out.exists() and not [p for p in corpora.iterdir() if p.name.startswith(".")]


def test_train_tokenizer_never_writes_into_a_users_directory(capsys, corpora, pretrain_corpus):
    code, _, err = run(capsys, "train-tokenizer", str(pretrain_corpus), "--vocab-size", "300", "--out",
                       str(corpora / "mine"))
    assert "exists and is not an empty directory" in error_line(code, err)
    assert [p.name for p in (corpora / "mine").iterdir()] == ["notes.txt"]


def test_train_tokenizer_json_reports_what_it_made(capsys, pretrain_corpus, tmp_path):
    code, out, err = run(capsys, "train-tokenizer", str(pretrain_corpus / "cats.txt"), "--vocab-size", "5000",
                         "--out", str(tmp_path / "tok"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["requested_vocab_size"] == 5000 and 265 < report["vocab_size"] < 5000  # the corpus ran out
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["chat_template.jinja", "tinygpt.json",
                                                                   "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("args, says", [
    (["{d}/short.txt"], "--tokenizer is required"),
    (["{d}/short.txt", "--tokenizer", "{d}/no-tokenizer"], "--tokenizer {d}/no-tokenizer: no tokenizer could be "
                                                            "loaded there"),
    (["{d}/missing.txt", "--tokenizer", "{tok}"], "--data {d}/missing.txt: no such file or directory"),
    (["{d}/blank.txt", "--tokenizer", "{tok}"], "--data {d}/blank.txt: no text in the corpus"),
    (["{d}/short.txt", "--tokenizer", "{tok}"], "fewer than one sequence of --seq-length 512"),
    (["{d}/short.txt", "--tokenizer", "{tok}", "--seq-length", "64", "--max-position-embeddings", "32"],
     "--seq-length 64 is longer than the model's context, --max-position-embeddings 32"),
    (["{d}/short.txt", "--tokenizer", "{tok}", "--heads", "6", "--hidden-size", "54"],
     "head size 9 (hidden 54 / 6 heads)"),
    ([], "--data: give the corpus"),
])
def test_pretrain_refuses_bad_input_and_writes_nothing(capsys, corpora, pretrain_tokenizer, args, says):
    out = corpora / "run"
    fill = {"d": corpora, "tok": pretrain_tokenizer[0]}
    code, _, err = run(capsys, "pretrain", *[a.format(**fill) for a in args], "--out", str(out), "--preset", "tiny")
    assert says.format(**fill) in error_line(code, err)
    assert not out.exists()


def test_pretrain_never_writes_into_a_users_directory(capsys, corpora, pretrain_corpus, pretrain_tokenizer):
    code, _, err = run(capsys, "pretrain", str(pretrain_corpus), "--tokenizer", str(pretrain_tokenizer[0]),
                       "--out", str(corpora / "mine"))
    assert "--out" in error_line(code, err) and "exists and is not an empty directory" in err
    assert [p.name for p in (corpora / "mine").iterdir()] == ["notes.txt"]
    code, _, err = run(capsys, "pretrain", "--resume", str(corpora / "mine"))
    assert "not a run directory of `tinygpt train`" in error_line(code, err)
    assert [p.name for p in (corpora / "mine").iterdir()] == ["notes.txt"]


def test_pretrain_prints_the_config_writes_json_and_registers(capsys, pretrain_corpus, pretrain_tokenizer, tmp_path,
                                                              store_env):
    from tinygpt.runtime.store import ModelStore

    conf = tmp_path / "run.toml"
    conf.write_text('preset = "tiny"\nseq_length = 16\nlearning_rate = 2e-3\nlayers = 1\n')
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "pretrain", str(pretrain_corpus / "cats.txt"), "--tokenizer",
                         str(pretrain_tokenizer[0]), "--config", str(conf), "--layers", "3", "--iters", "4",
                         "--out", str(run_dir), "--register", "my-base", "--json")
    assert code == 0, err
    assert f"tinygpt pretrain -> {run_dir}" in err and "  learning_rate = 0.002" in err and "  layers = 3" in err
    assert "tokenizing --data: " in err and "(100%)" in err and "step 4/4  loss" in err  # progress, on stderr
    summary = json.loads(out)
    assert summary["status"] == "complete" and summary["registered"] == "my-base" and summary["step"] == 4
    assert json.loads((run_dir / "model" / "config.json").read_text())["num_hidden_layers"] == 3  # flag > file
    entry = ModelStore().resolve("my-base")
    assert entry.base.resolve() == (run_dir / "model").resolve()
    code, _, err = run(capsys, "train", "--resume", str(run_dir))
    assert "a pretraining run; continue it with `tinygpt pretrain --resume`" in error_line(code, err)
    code, _, err = run(capsys, "pretrain", "--resume", str(run_dir), "--seq-length", "32")
    assert "these flags would change it: --seq-length" in error_line(code, err)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, out, err = run(capsys, "pretrain", "--resume", str(run_dir))
    assert code == 0 and "is already complete; nothing was run or rewritten" in out and "registered as my-base" in out
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    code, _, err = run(capsys, "pretrain", "--resume", str(run_dir), "--out", str(tmp_path / "elsewhere"))
    assert "continues the run where it is; leave out --out" in error_line(code, err)


def test_help_teaches_with_examples(capsys):
    for command, needed in (("pretrain", ("examples:", "--resume runs/base", "--tokenizer tokenizers/mine", "wsd",
                                          "--seq-length", "--grad-accumulation", "mlx_lm.load", "<|endoftext|>")),
                            ("train-tokenizer", ("examples:", "--vocab-size", "<tool_call>", "<|im_end|>",
                                                 "tinygpt pretrain"))):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        for word in needed:
            assert word in text, (command, word)
