"""First-use fetch of the real vocabularies, against a real package index served on 127.0.0.1.

The index serves small stand-ins for the llama-cpp-python sdist and the mistral-common wheel (same file names,
same member paths), so these tests check the fetch (progress, hash, temp-then-rename, cache errors, one download
per archive for every vocabulary it holds) without PyPI.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tinygpt.runtime import index_fetch, vocab

MEMBER = "llama_cpp_python-0.3.36/" + vocab.GGUF_MEMBER
PAYLOAD = {"": os.urandom(200_000), ".inp": b"hello\n__ggml_vocab_test__\nworld", ".out": b"1 2\n3"}
NEMO = "mistralai-Mistral-Nemo-Instruct-2407.jinja"  # also in the sdist: kept by the first download of it
NEMO_TEXT = b"{{ bos_token }}[TOOL_CALLS]["
TEKKEN = b'{"config": {}, "vocab": []}'


def _sdist() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = {MEMBER + suffix: data for suffix, data in PAYLOAD.items()}
        members["llama_cpp_python-0.3.36/" + vocab.SDIST.members[NEMO]] = NEMO_TEXT
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(vocab.MISTRAL_WHEEL.members["tekken_240718.json"], TEKKEN)
    return buf.getvalue()


SDIST = _sdist()
FILES = {"llama-cpp-python": (vocab.SDIST_FILE, SDIST), "mistral-common": (vocab.MISTRAL_WHEEL.filename, _wheel())}


class Index:
    """A simple-API index: `mode` picks json / html / bad-hash / truncated for the next requests."""

    def __init__(self):
        self.mode = "json"
        self.requests: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                index.requests.append(self.path)
                for project, (filename, data) in FILES.items():
                    sha = hashlib.sha256(data).hexdigest() if index.mode != "bad-hash" else "0" * 64
                    if self.path == f"/simple/{project}/":
                        if index.mode == "html":
                            body = (f'<html><body><a href="../../files/{filename}#sha256={sha}">'
                                    f'{filename}</a></body></html>').encode()
                            return self._send(body, "text/html")
                        files = [{"filename": filename, "url": f"/files/{filename}",
                                  "hashes": {"sha256": sha}, "size": len(data)}]
                        return self._send(json.dumps({"files": files}).encode(),
                                          "application/vnd.pypi.simple.v1+json")
                    if self.path == f"/files/{filename}":
                        if index.mode == "truncated":
                            self.send_response(200)
                            self.send_header("Content-Length", str(len(data)))
                            self.end_headers()
                            self.wfile.write(data[: len(data) // 2])
                            self.close_connection = True
                            return
                        return self._send(data, "application/octet-stream")
                self.send_error(404)

            def _send(self, body, kind):
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def index():
    idx = Index()
    yield idx
    idx.server.shutdown()
    idx.server.server_close()


@pytest.fixture
def cache(index, tmp_path, monkeypatch):
    index.mode = "json"
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    monkeypatch.delenv("TINYGPT_QWEN_GGUF", raising=False)
    return tmp_path / "cache"


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("mode", ["json", "html"])
def test_fetch_writes_the_vocab_with_a_few_plain_progress_lines(cache, index, capsys, mode):
    index.mode = mode
    path = vocab.qwen_gguf_path()
    assert path == cache / "vocab" / "ggml-vocab-qwen2.gguf"
    for suffix, data in PAYLOAD.items():
        assert path.with_name(path.name + suffix).read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([NEMO] + [path.name + s for s in PAYLOAD])
    lines = capsys.readouterr().err.splitlines()
    assert 3 <= len(lines) <= 7, lines
    assert "0.2 MB" in lines[1] and vocab.SDIST_FILE in lines[1]
    assert [ln.strip().split()[0] for ln in lines[2:]] == ["25%", "50%", "75%", "done:"]
    seen = len(index.requests)
    assert vocab.qwen_gguf_path() == path and len(index.requests) == seen  # cached: no request


def test_progress_is_a_byte_bar_on_a_terminal(index, tmp_path, monkeypatch):
    index.mode = "json"
    monkeypatch.setenv("COLUMNS", "120")
    item = index_fetch.find_file("llama-cpp-python", vocab.SDIST_FILE, index.url)
    term = Terminal()
    got = index_fetch.download(item, tmp_path, out=term)
    assert got.read_bytes() == SDIST
    shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", term.getvalue())
    kb = f"{len(SDIST) / 1000:.1f}"
    assert "fetching " + vocab.SDIST_FILE in shown and "━" in shown
    assert f"0.0/{kb} kB" in shown and f"{kb}/{kb}" in shown  # bytes so far / total, first and last frame


@pytest.mark.parametrize("mode,why", [("bad-hash", "does not match"), ("truncated", "")])
def test_a_failed_download_leaves_no_file_that_looks_complete(cache, index, mode, why):
    index.mode = mode
    with pytest.raises(vocab.VocabError) as err:
        vocab.qwen_gguf_path()
    assert why in str(err.value) and "TINYGPT_QWEN_GGUF" in str(err.value)
    assert list((cache / "vocab").iterdir()) == []  # no .part, no temp dir, no gguf


def test_files_tinygpt_did_not_write_are_left_alone(cache, index):
    mine = cache / "vocab"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / "ggml-vocab-qwen2.gguf.inp").write_text("my own test vectors")
    vocab.qwen_gguf_path()
    assert (mine / "notes.txt").read_text() == "mine"
    assert (mine / "ggml-vocab-qwen2.gguf.inp").read_text() == "my own test vectors"
    assert (mine / "ggml-vocab-qwen2.gguf").read_bytes() == PAYLOAD[""]


def test_unwritable_cache_is_a_vocab_error_naming_the_path(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TINYGPT_CACHE", str(blocker / "cache"))
    monkeypatch.delenv("TINYGPT_QWEN_GGUF", raising=False)
    with pytest.raises(vocab.VocabError) as err:
        vocab.qwen_gguf_path()
    msg = str(err.value)
    assert str(blocker / "cache" / "vocab") in msg and "TINYGPT_CACHE" in msg and "\n" not in msg
    assert blocker.read_text() == "not a directory"


def test_cli_prints_an_unwritable_cache_as_one_line_and_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {**os.environ, "TINYGPT_CACHE": str(blocker / "cache")}
    env.pop("TINYGPT_QWEN_GGUF", None)
    cmd = [sys.executable, "-m", "tinygpt.cli", "init-model", str(tmp_path / "m"), "--vocab", "qwen"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "TINYGPT_CACHE" in errors[0] and "Traceback" not in proc.stderr


def test_an_index_without_the_project_is_a_one_line_vocab_error(cache, index, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", index.url.replace("/simple", "/elsewhere"))
    with pytest.raises(vocab.VocabError) as err:
        vocab.qwen_gguf_path()
    msg = str(err.value)
    assert msg.startswith("could not read the package index page http://127.0.0.1:") and "Not Found" in msg
    assert "\n" not in msg and not (cache / "vocab" / "ggml-vocab-qwen2.gguf").exists()


def test_each_archive_is_downloaded_once_for_every_vocabulary_it_holds(cache, index):
    seen = len(index.requests)
    files = vocab.vocab_files("mistral")  # the wheel's tekken file and the sdist's Nemo template
    assert [p.name for p in files] == ["tekken_240718.json", NEMO]
    assert files[0].read_bytes() == TEKKEN and files[1].read_bytes() == NEMO_TEXT
    downloads = [r for r in index.requests[seen:] if r.startswith("/files/")]
    assert sorted(downloads) == sorted(f"/files/{f}" for f, _ in FILES.values())
    assert vocab.qwen_gguf_path().read_bytes() == PAYLOAD[""]  # kept from that one sdist download
    assert [r for r in index.requests[seen:] if r.startswith("/files/")] == downloads


def test_a_member_missing_from_its_archive_is_a_vocab_error_saying_what_to_put_where(cache, index):
    with pytest.raises(vocab.VocabError) as err:
        vocab.vocab_files("llama3")  # the stand-in sdist has no Llama files
    msg = str(err.value)
    assert "ggml-vocab-llama-bpe.gguf" in msg and str(cache / "vocab") in msg and "\n" not in msg
