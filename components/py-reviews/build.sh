#!/usr/bin/env bash
# Tests and builds the reviews service: components/target/py-reviews.wasm,
# or the path given. Needs python3 and `pip install componentize-py==0.25.1`.
#
# Its `bazaar` helper package is the one `bazaar new --lang python` writes,
# used from host/templates/python/bazaar so that there is one copy. It is
# staged with app.py in a temporary directory because componentize-py
# writes bytecode caches next to the sources it reads, and those must not
# land in the templates the host embeds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/components/target/py-reviews.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
export PYTHONDONTWRITEBYTECODE=1
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$repo/host/templates/python/bazaar" "$here/app.py" "$here/test_app.py" "$stage/"
rm -rf "$stage/bazaar/__pycache__"
(cd "$stage" && python3 -m unittest --quiet)
mkdir -p "$(dirname "$out")"
(cd "$stage" && componentize-py -d "$repo/wit" -w bazaar:platform/service componentize app -o "$out")
echo "built $out"
