"""Fetch one file of a pinned release from a Python package index, with byte progress on stderr.

Speaks the simple repository API (PEP 691 JSON, or PEP 503 HTML) of `$PIP_INDEX_URL` (default PyPI), checks
the sha256 the index publishes, and writes the file under a temporary name that is renamed only once complete.
It is not pip: no dependency resolution and no metadata build (that build was most of the 49 s the old
`pip download` of the llama-cpp-python sdist took); a proxy comes from the usual `https_proxy` variables.
"""
from __future__ import annotations

import hashlib
import html
import http.client
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

DEFAULT_INDEX = "https://pypi.org/simple"
CHUNK = 1 << 16


class FetchError(RuntimeError):
    """The index could not be read, the file is not listed, or the bytes do not match its hash."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str
    size: int | None


def index_url() -> str:
    return (os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def find_file(project: str, filename: str, index: str | None = None) -> IndexFile:
    """Look `filename` up on the index page of `project` (PEP 691 JSON preferred, PEP 503 HTML accepted)."""
    page = f"{index or index_url()}/{project}/"
    req = urllib.request.Request(page, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1", "User-Agent": "tinygpt"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            kind = resp.headers.get("Content-Type", "")
            body = resp.read().decode("utf-8", "replace")
            base = resp.geturl()
    except (urllib.error.URLError, OSError, http.client.HTTPException, UnicodeDecodeError) as exc:
        raise FetchError(f"could not read the package index page {page} ({_reason(exc)})") from exc
    try:
        files = _json_files(body) if "json" in kind else _html_files(body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FetchError(f"{page} is not a readable package index page ({exc})") from exc
    for name, url, sha, size in files:
        if name == filename:
            if not sha:
                raise FetchError(f"{page} lists {filename} without a sha256 hash; cannot verify it")
            return IndexFile(filename, urllib.parse.urljoin(base, url), sha, size)
    raise FetchError(f"{page} does not list {filename}")


def _json_files(body: str) -> list[tuple[str, str, str, int | None]]:
    return [(f["filename"], f["url"], f.get("hashes", {}).get("sha256", ""), f.get("size"))
            for f in json.loads(body).get("files", [])]


def _html_files(body: str) -> list[tuple[str, str, str, int | None]]:
    out = []
    for href, text in re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>([^<]*)</a>', body):
        href = html.unescape(href)
        sha = href.split("#sha256=", 1)[1] if "#sha256=" in href else ""
        out.append((text.strip(), href.split("#", 1)[0], sha, None))
    return out


def download(item: IndexFile, dest: Path, out: TextIO | None = None) -> Path:
    """Stream `item` to `dest` (a directory) as `<name>.part`, verify sha256, then rename to its name.

    Progress: a rich bar in bytes when `out` (default stderr) is a terminal, else a few plain lines.
    Anything that stops it part-way (error, Ctrl-C) removes only the `.part` file this call created.
    """
    out = out or sys.stderr
    final = dest / item.filename
    fd, part_name = tempfile.mkstemp(prefix=item.filename + ".", suffix=".part", dir=dest)
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            digest = _stream(item, fh, out)
        if digest != item.sha256:
            raise FetchError(f"{item.url}: sha256 {digest} does not match the index's {item.sha256}")
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return final


def _stream(item: IndexFile, fh, out: TextIO) -> str:
    req = urllib.request.Request(item.url, headers={"User-Agent": "tinygpt"})
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise FetchError(f"could not download {item.url} ({_reason(exc)})") from exc
    with resp:
        total = item.size or int(resp.headers.get("Content-Length") or 0) or None
        report = _TerminalBar(out, item, total) if out.isatty() else _PlainLines(out, item, total)
        sha = hashlib.sha256()
        done = 0
        with report as advance:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchError(f"download of {item.url} broke off after {done} bytes ({exc})") from exc
                if not chunk:
                    break
                fh.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                advance(done)
    if total and done != total:
        raise FetchError(f"download of {item.url} stopped at {done} of {total} bytes")
    return sha.hexdigest()


class _TerminalBar:
    """Context manager yielding advance(done): a rich byte bar on a terminal."""

    def __init__(self, out: TextIO, item: IndexFile, total: int | None):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=Console(file=out), transient=False)
        self._task = self._progress.add_task(f"fetching {item.filename}", total=total)

    def __enter__(self):
        self._progress.start()
        return lambda done: self._progress.update(self._task, completed=done)

    def __exit__(self, *exc):
        self._progress.stop()
        return False


class _PlainLines:
    """Context manager yielding advance(done): one line at the start, at each quarter, and at the end."""

    def __init__(self, out: TextIO, item: IndexFile, total: int | None):
        self._out, self._item, self._total = out, item, total
        self._next_quarter, self._start, self._done = 1, 0.0, 0

    def __enter__(self):
        size = f" ({_mb(self._total)})" if self._total else ""
        self._say(f"fetching {self._item.filename}{size} from {urllib.parse.urlsplit(self._item.url).netloc}")
        self._start = time.monotonic()
        return self._advance

    def _advance(self, done: int) -> None:
        self._done = done
        while self._total and self._next_quarter < 4 and done * 4 >= self._next_quarter * self._total:
            self._say(f"  {self._next_quarter * 25}% ({_mb(done)})")
            self._next_quarter += 1

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self._say(f"  done: {_mb(self._done)} in {time.monotonic() - self._start:.1f} s")
        return False

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)
