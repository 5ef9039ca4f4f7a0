#!/usr/bin/env bash
# make docs: the API reference from the docstrings, with Sphinx from Debian
# (python3-sphinx), installed when missing; warnings are errors.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import sphinx" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "[docs] installing python3-sphinx"
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-sphinx
fi
.venv/bin/python -m sphinx -q -E -W -b html docs docs/api
echo "[docs] wrote docs/api/index.html"
