#!/usr/bin/env bash
# Runs the unit tests, then builds {{name}}.wasm for Bazaar with componentize-py
# (pip install componentize-py==0.25.1), against the WIT in wit/.
set -euo pipefail
cd "$(dirname "$0")"
# Bytecode caches would end up inside the component; they are not needed.
export PYTHONDONTWRITEBYTECODE=1
python3 -m unittest --quiet
componentize-py -d wit -w bazaar:platform/service componentize app -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
