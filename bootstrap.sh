#!/usr/bin/env bash
# Set up tinygpt on a fresh Linux or macOS machine, then run one thing. Idempotent and quick when set up.
#   ./bootstrap.sh demo        the main job on the embedded default world and model
#   ./bootstrap.sh test [...]  the test suite (extra args go to pytest)
#   ./bootstrap.sh setup       set up only
# Linux: installs OpenBLAS with apt when it can (root, or passwordless sudo); MLX then uses it automatically.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
BFCL_PIN="bfcl-eval==2026.3.23"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

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

stamp="$VENV/.tinygpt-stamp"
want="$(cat pyproject.toml bootstrap.sh | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing tinygpt and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  # BFCL's data and checker, for the differential sandbox tests and evals; its own deps are not needed.
  "$VENV/bin/python" -m pip install -q --no-deps "$BFCL_PIN"
  echo "$want" > "$stamp"
fi

cmd=${1:-demo}; shift || true
case "$cmd" in
  demo)  exec "$VENV/bin/tinygpt" quickstart "$@" ;;
  test)  exec "$VENV/bin/python" -m pytest "$@" ;;
  setup) say "ready: $VENV/bin/tinygpt --help" ;;
  *) say "unknown command '$cmd' (use: demo | test | setup)"; exit 2 ;;
esac
