#!/usr/bin/env bash
# Create the EMhub 1.0.2 server venv used by the worker integration tests (idempotent).
#   tests/emhub/setup_server.sh [VENV_DIR]     default: <repo>/.venv-emhub
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${1:-${EMOTF_EMHUB_VENV:-$HERE/../../.venv-emhub}}"
MARKER="$VENV/.emotf-emhub-1.0.2"
if [ -f "$MARKER" ] && [ "$MARKER" -nt "$HERE/server-requirements.txt" ]; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -r "$HERE/server-requirements.txt"
# EMhub pins numpy==1.23.0 (compiles for minutes on Python 3.11): install it without deps.
"$VENV/bin/pip" install --quiet --no-deps emhub==1.0.2
touch "$MARKER"
