#!/usr/bin/env bash
# The interop environment: Mooncake's published wheel (pinned, its dependencies
# pinned by constraints.txt) in an ignored virtualenv, plus the Debian library
# its engine links (libibverbs, even for TCP).
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEEL="mooncake-transfer-engine-non-cuda==0.3.13.post1"
if ! ldconfig -p | grep -q libibverbs.so.1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libibverbs1 >/dev/null
  else
    echo "libibverbs1 is missing and we are not root to install it" >&2; exit 1
  fi
fi
# The engine, and Mooncake's HTTP metadata server (needs aiohttp).
CHECK="import mooncake.engine, mooncake.http_metadata_server"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c "$CHECK" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check -c test/interop/constraints.txt "$WHEEL"
.venv/bin/python -c "$CHECK; print('mooncake interop environment ready')"
