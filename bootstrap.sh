#!/usr/bin/env bash
# Set up tinygpt on a fresh Linux or macOS machine, then run one thing. Idempotent and quick when set up.
#   ./bootstrap.sh demo        the main job on the embedded default world and model
#   ./bootstrap.sh test [...]  the test suite (extra args go to pytest)
#   ./bootstrap.sh setup       set up only
# Linux: installs OpenBLAS with apt when it can (root, or passwordless sudo); MLX then uses it automatically.
# setup/test (not demo) also install Debian's chromium when missing, for the browser UI's tests.
# Quiet: one line per step; pip's output goes to .venv/bootstrap-pip.log and is shown only if a step fails.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
BFCL_PIN="bfcl-eval==2026.3.23"

if [ -t 2 ]; then say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
else say() { printf '[bootstrap] %s\n' "$*" >&2; }; fi

cmd=${1:-demo}; shift || true
case "$cmd" in demo|test|setup) ;; *) say "unknown command '$cmd' (use: demo | test | setup)"; exit 2 ;; esac

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else return 1; fi
  fi
  command -v apt-get >/dev/null || return 1
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if [ "$(uname -s)" = Linux ] && ! ls /usr/lib/*/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1 \
   && ! ls /usr/lib*/libopenblas*.so* >/dev/null 2>&1; then
  say "installing OpenBLAS (libopenblas0-pthread) for a fast MLX CPU path"
  apt_install libopenblas0-pthread || say "could not install OpenBLAS (no apt/root); MLX will use its slow bundled BLAS"
fi

# The browser UI's tests drive Debian's Chromium (tests/web/browser_for_tests.py); `demo` does not need it.
if [ "$cmd" != demo ] && [ "$(uname -s)" = Linux ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium (the browser UI's tests drive it headless)"
  apt_install chromium || say "could not install Chromium (no apt/root); the browser UI tests will be skipped"
fi

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  say "tinygpt needs Python >= 3.11; found $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11+"; exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv || { say "python venv module missing; install python3-venv"; exit 2; }
    "$PY" -m venv "$VENV"
  fi
fi

# pip's own output (and any index warnings) goes to a log; it is shown only when a step fails.
LOG="$VENV/bootstrap-pip.log"
pip_step() {
  local what=$1; shift
  say "$what"
  if ! "$VENV/bin/python" -m pip "$@" >>"$LOG" 2>&1; then
    say "failed: pip $*"
    tail -n 30 "$LOG" >&2
    say "the full pip output is in $LOG"
    exit 1
  fi
}

stamp="$VENV/.tinygpt-stamp"
want="$(cat pyproject.toml bootstrap.sh | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  : >"$LOG"
  say "installing into $VENV (a few minutes on a fresh machine; pip's output: $LOG)"
  pip_step "  1/3 pip, setuptools, wheel" install --upgrade pip setuptools wheel
  pip_step "  2/3 tinygpt and its dependencies (editable, with [dev])" install -e ".[dev]"
  # BFCL's data and checker, for the differential sandbox tests and evals; its own deps are not needed.
  pip_step "  3/3 $BFCL_PIN (data and checker, --no-deps)" install --no-deps "$BFCL_PIN"
  echo "$want" > "$stamp"
  say "installed"
fi

case "$cmd" in
  demo)  exec "$VENV/bin/tinygpt" quickstart "$@" ;;
  test)  exec "$VENV/bin/python" -m pytest "$@" ;;
  setup) say "ready: $VENV/bin/tinygpt --help" ;;
esac
