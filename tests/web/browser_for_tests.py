"""Not a test module: a headless browser for the UI tests (Playwright driving Debian's Chromium).

Import the fixtures into a test module: `from browser_for_tests import browser, ui_page  # noqa: F401`.
- `browser`: one Chromium for the whole session (launched on first use, closed at the end).
- `ui_page`: a fresh page (own context, own storage) that records console errors, page errors and any request
  that leaves 127.0.0.1 (aborted: the UI must work offline); at the end of the test it saves a screenshot to
  `test-artifacts/ui/<test name>.png` and fails the test if anything was recorded.
`open_page(browser, name)` is the same as a context manager, for code that is not a fixture.
`ui_server(model_dir, **config)`: a real server built as `tinygpt serve` builds it (tinygpt.cli_serve.build_app:
the chat's tool worlds, the eval results) on a free 127.0.0.1 port, for the UI tests; yields (base URL, app).
The browser is always /usr/bin/chromium (Playwright's own download does not work here). Without it, or without
the playwright package, the tests are skipped with the reason, except under CI (env CI set), where they fail.
"""
import contextlib
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
# Without the background-networking flags Chromium keeps dialling Google services, which this network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

_shared = {}


def _missing(reason):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: ./bootstrap.sh setup)")
    pytest.skip(f"{reason}; install it with ./bootstrap.sh setup (apt-get install chromium; pip install playwright)")


def shared_browser():
    """The session's one Chromium (a Playwright Browser), launched on first call."""
    if "browser" in _shared:
        return _shared["browser"]
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"the UI tests need Debian's Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the UI tests need the playwright package (the [dev] extra)")
    pw = sync_playwright().start()
    # launch() gives Chromium a fresh temporary profile (user-data-dir) of its own, removed on close.
    _shared.update(playwright=pw, browser=pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS))
    return _shared["browser"]


def close_shared_browser():
    browser, pw = _shared.pop("browser", None), _shared.pop("playwright", None)
    if browser is not None:
        browser.close()
    if pw is not None:
        pw.stop()


@pytest.fixture(scope="session")
def browser():
    """The session's Chromium. Several modules may import this fixture; they all get the same browser."""
    yield shared_browser()
    close_shared_browser()


class PageProblems(list):
    """What went wrong on a page: console errors, uncaught page errors, requests that tried to leave the host."""

    def watch(self, page):
        page.on("console", lambda msg: msg.type == "error" and self.append(
            f"console error: {msg.text} (at {msg.location.get('url')}:{msg.location.get('lineNumber')})"))
        page.on("pageerror", lambda err: self.append(f"page error: {err}"))


def _screenshot_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120] or "page"


@contextlib.contextmanager
def open_page(browser, name, *, allowed_errors=()):
    """A fresh page; on exit saves test-artifacts/ui/<name>.png and raises AssertionError on any recorded
    problem. `allowed_errors`: regexes of console messages a test provokes on purpose (e.g. a 4xx it asks for)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems = PageProblems()

    def offline_only(route):
        host = urlsplit(route.request.url).hostname
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            problems.append(f"request left the machine: {route.request.url}")
            route.abort()

    context.route("**/*", offline_only)
    page = context.new_page()
    problems.watch(page)
    failed = False
    try:
        yield page
    except BaseException:
        failed = True
        raise
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{_screenshot_name(name)}.png"), full_page=True)
        finally:
            context.close()
    real = [p for p in problems if not any(re.search(rx, p) for rx in allowed_errors)]
    if real and not failed:
        raise AssertionError("the page reported problems:\n" + "\n".join(real))


@contextlib.contextmanager
def ui_server(model_dir, **overrides):
    """A real uvicorn server of `tinygpt serve`'s app (tinygpt.cli_serve.build_app: the tool worlds and the eval
    results wired) for `ServeConfig(model=model_dir, **overrides)`, in a thread on a free 127.0.0.1 port; yields
    (base URL, app)."""
    from server_for_tests import serving

    from tinygpt.cli_serve import build_app
    from tinygpt.web.config import ServeConfig

    app = build_app(ServeConfig(model=str(model_dir), **overrides))
    with serving(app) as url:
        yield url, app


@pytest.fixture
def ui_page(browser, request):
    """A fresh page for this test (see `open_page`); the screenshot is named after the test."""
    allowed = getattr(request.node.get_closest_marker("ui_allowed_errors"), "args", ())
    with open_page(browser, request.node.name, allowed_errors=allowed) as page:
        yield page
