#!/usr/bin/env bash
# Golden captures of the real mooncake_master wire (coro_rpc + struct_pack) and the Python
# store client of the pinned wheel (mooncake-transfer-engine-non-cuda==0.3.13.post1).
#
# Re-run (as root, from anywhere; takes ~2 minutes for all scenarios on 2 cores):
#     test/store/capture.sh                  # every scenario (test/store/capture_*.py)
#     test/store/capture.sh put_get remove   # only these scenarios
# Writes, for each scenario NAME:
#     test/store/pcap/NAME.pcap        raw loopback capture of `tcp port <master rpc port>`
#     test/store/pcap/NAME.meta.json   ports, master argv, driver events, the client's op log
#     test/store/vectors/NAME.json     decoded frames per TCP connection, labelled per operation
# and test/store/vectors/function_ids.json (every method the master registers -> function id).
# Master/client/tcpdump logs go to a temp dir (printed; set CAPTURE_LOG_DIR to choose it).
#
# What it needs: the venv from test/interop/setup.sh (run here if missing), tcpdump (installed
# with apt-get if missing and we are root). What it runs, per scenario (see capture.py):
#     tcpdump -i lo -U --immediate-mode -s 0 -w pcap/NAME.pcap 'tcp port RPC'
#     MC_FORCE_TCP=1 .venv/lib/python3*/site-packages/mooncake/mooncake_master \
#        --rpc_port=RPC --rpc_address=127.0.0.1 --enable_http_metadata_server=true \
#        --http_metadata_server_port=HTTP --http_metadata_server_host=127.0.0.1 \
#        --metrics_port=METRICS --metrics_host=127.0.0.1 --default_kv_lease_ttl=1000 --logtostderr=1
#     MC_FORCE_TCP=1 MC_TCP_BIND_ADDRESS=127.0.0.1 .venv/bin/python test/store/capture_NAME.py
# RPC/HTTP/METRICS are free loopback ports picked per scenario. Every process started is
# stopped by pid before the next scenario. Re-running rewrites pcap/ and vectors/ (ports,
# client ids, addresses and timestamps differ from run to run; the frame shapes do not).
# To only re-decode existing pcaps: python3 test/store/extract_vectors.py [NAME ...]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
if ! "$REPO/.venv/bin/python" -c 'import mooncake.store' 2>/dev/null; then
  "$REPO/test/interop/setup.sh"
fi
if ! command -v tcpdump >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null
  else
    echo "tcpdump is missing (apt-get install -y tcpdump, as root)" >&2; exit 1
  fi
fi
ARGS=()
[ -n "${CAPTURE_LOG_DIR:-}" ] && ARGS+=(--log-dir "$CAPTURE_LOG_DIR")
python3 "$HERE/capture.py" "${ARGS[@]}" "$@"
python3 "$HERE/extract_vectors.py" --function-table "$@"
