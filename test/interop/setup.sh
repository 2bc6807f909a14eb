#!/usr/bin/env bash
# The interop environment: Mooncake's published wheel (pinned, its dependencies
# pinned by constraints.txt) in an ignored virtualenv, plus the Debian library
# its engine links (libibverbs, even for TCP).
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEEL="mooncake-transfer-engine-non-cuda==0.3.13.post1"
# The Prometheus project's Python client: its parser checks our /metrics text (test/observability.test.ts).
PROM="prometheus_client==0.26.0"
if ! ldconfig -p | grep -q libibverbs.so.1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libibverbs1 >/dev/null
  else
    echo "libibverbs1 is missing and we are not root to install it" >&2; exit 1
  fi
fi
# The engine, Mooncake's HTTP metadata server (needs aiohttp), and the Prometheus parser.
CHECK="import mooncake.engine, mooncake.http_metadata_server, prometheus_client.parser"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -c "$CHECK" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check -c test/interop/constraints.txt "$WHEEL" "$PROM"
.venv/bin/python -c "$CHECK; print('mooncake interop environment ready')"
