#!/usr/bin/env bash
# Lints api/openapi.yaml with Redocly (pinned in tests/lint/package-lock.json) and
# checks every example in it against its schema (tests/api/check_openapi_examples.py).
# node_modules goes to build-ci/lint (outside the source tree).
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=build-ci/lint
mkdir -p "$prefix"
cp tests/lint/package.json tests/lint/package-lock.json "$prefix/"
if [ ! -x "$prefix/node_modules/.bin/redocly" ] || ! cmp -s tests/lint/package-lock.json "$prefix/.installed-lock"; then
  (cd "$prefix" && npm ci --no-audit --no-fund --loglevel=error)
  cp tests/lint/package-lock.json "$prefix/.installed-lock"
fi
"$prefix/node_modules/.bin/redocly" lint --config api/redocly.yaml api/openapi.yaml
/usr/bin/python3 tests/api/check_openapi_examples.py
