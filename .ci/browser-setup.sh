#!/usr/bin/env bash
# Install what the browser tests (tests/browser, `pytest -m browser`) need on Debian, into the
# virtual environment that `make venv` made ($VENV, default .venv):
# Debian's Chromium (with apt-get, as root), and Playwright plus JupyterLab (the project's
# `browser` and `lab` extras, with pip).
# Playwright drives /usr/bin/chromium, so no `playwright install` browser download happens.
# Safe to run again: each step is skipped or a no-op when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: $CHROMIUM not found; install it as root: apt-get install -y chromium" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "error: no virtual environment at $VENV; create it first with: make venv" >&2
    exit 1
fi
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$VENV/bin/python" -m pip install -q -e '.[browser,lab]'

"$CHROMIUM" --version
"$VENV/bin/python" -c 'import playwright, jupyterlab; print("jupyterlab", jupyterlab.__version__)'
