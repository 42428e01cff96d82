#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine: set up, lint, type-check, test.
# The tests run in a private network namespace with only loopback up (as root), which keeps every
# service they start off the network and proves that no test reaches outside.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider -q -ra "$@")
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare --net true 2>/dev/null; then
  exec unshare --net -- bash -c 'ip link set lo up && exec "$@"' lightbox-tests "${PYTEST[@]}"
else
  echo "(not root or no unshare: running the tests without a private network namespace)"
  exec "${PYTEST[@]}"
fi
