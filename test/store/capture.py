#!/usr/bin/env python3
"""Capture driver: real mooncake_master + the wheel's Python store client, on loopback.

For each scenario NAME (a test/store/capture_NAME.py client script) this driver:
  1. picks three free loopback ports (master RPC, HTTP metadata, metrics);
  2. starts `tcpdump -i lo -U --immediate-mode -s 0 -w pcap/NAME.pcap tcp port RPC`;
  3. starts the wheel's real `mooncake_master` binary (not a wrapper) with
       --rpc_port=RPC --rpc_address=127.0.0.1
       --enable_http_metadata_server=true --http_metadata_server_port=HTTP
       --http_metadata_server_host=127.0.0.1
       --metrics_port=METRICS --metrics_host=127.0.0.1
       --default_kv_lease_ttl=1000 --logtostderr=1
     under MC_FORCE_TCP=1, and waits until RPC is in LISTEN (read from
     /proc/net/tcp, so no probe connection pollutes the capture);
  4. runs the client script with the venv's python (MC_FORCE_TCP=1,
     MC_TCP_BIND_ADDRESS=127.0.0.1); if the script prints "@@RESTART <down_s> <SIG>"
     the driver kills the master with that signal, waits, starts it again with the
     same argv and ports, and answers "@@OK" on the script's stdin;
  5. after the script exits: waits 1 s, stops the master (SIGTERM, then SIGKILL),
     stops tcpdump (SIGINT) and checks that it dropped nothing;
  6. writes pcap/NAME.meta.json (ports, argv, driver events, the client's op log).
Every process it starts is stopped by pid in a finally block.

Usage (normally through capture.sh, which also runs extract_vectors.py):
  .venv/bin/python test/store/capture.py [--log-dir DIR] [NAME ...]
With no NAME, every capture_*.py next to this file is run, one after the other.
"""

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
WHEEL = "mooncake-transfer-engine-non-cuda"
LEASE_TTL_MS = 1000


def find_master():
    pats = glob.glob(os.path.join(REPO, ".venv", "lib", "python3*", "site-packages",
                                  "mooncake", "mooncake_master"))
    if not pats:
        sys.exit("mooncake_master not found in .venv: run test/interop/setup.sh")
    return pats[0]


def wheel_version():
    out = subprocess.run([VENV_PY, "-c",
                          "import importlib.metadata as m; print(m.version(%r))" % WHEEL],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def free_ports(n):
    import socket
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def listening(port):
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    """Stop one process we started, by pid; escalate to SIGKILL."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=5)


class Master:
    def __init__(self, binary, ports, log_dir, name):
        rpc, http, metrics = ports
        self.rpc = rpc
        self.argv = [binary,
                     "--rpc_port=%d" % rpc, "--rpc_address=127.0.0.1",
                     "--enable_http_metadata_server=true",
                     "--http_metadata_server_port=%d" % http,
                     "--http_metadata_server_host=127.0.0.1",
                     "--metrics_port=%d" % metrics, "--metrics_host=127.0.0.1",
                     "--default_kv_lease_ttl=%d" % LEASE_TTL_MS,
                     "--logtostderr=1"]
        self.log_dir, self.name = log_dir, name
        self.proc = None
        self.generation = 0

    def start(self):
        self.generation += 1
        log = open(os.path.join(self.log_dir, "%s.master.%d.log" % (self.name, self.generation)), "w")
        env = dict(os.environ, MC_FORCE_TCP="1")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()
        wait_for(lambda: listening(self.rpc) or self.proc.poll() is not None, 30,
                 "master to listen on %d" % self.rpc)
        if self.proc.poll() is not None:
            raise RuntimeError("master exited early, see log in " + self.log_dir)

    def kill(self, signame):
        sig = getattr(signal, "SIG" + signame)
        return stop(self.proc, sig, timeout=15)


def run_scenario(name, log_dir, pcap_dir, client_timeout):
    script = os.path.join(HERE, "capture_%s.py" % name)
    if not os.path.exists(script):
        raise SystemExit("no such scenario: " + script)
    ports = free_ports(3)
    pcap = os.path.join(pcap_dir, name + ".pcap")
    ops_file = os.path.join(log_dir, name + ".ops.json")
    for stale in (ops_file, pcap):
        if os.path.exists(stale):
            os.remove(stale)
    events = []

    def ev(text):
        events.append({"t": time.time(), "event": text})
        print("[driver %s] %s" % (name, text), flush=True)

    master = Master(find_master(), ports, log_dir, name)
    tcpdump = client = None
    td_err_path = os.path.join(log_dir, name + ".tcpdump.log")
    client_rc = None
    try:
        td_err = open(td_err_path, "w")
        tcpdump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-s", "0",
                                    "-w", pcap, "tcp port %d" % ports[0]],
                                   stdout=subprocess.DEVNULL, stderr=td_err,
                                   stdin=subprocess.DEVNULL)
        td_err.close()
        wait_for(lambda: "listening on" in open(td_err_path).read() or tcpdump.poll() is not None,
                 15, "tcpdump")
        if tcpdump.poll() is not None:
            raise RuntimeError("tcpdump failed: " + open(td_err_path).read())
        ev("tcpdump started pid=%d" % tcpdump.pid)
        master.start()
        ev("master started pid=%d ports rpc=%d http=%d metrics=%d" % ((master.proc.pid,) + tuple(ports)))

        env = dict(os.environ, MC_FORCE_TCP="1", MC_TCP_BIND_ADDRESS="127.0.0.1",
                   MC_CAPTURE_OPS=ops_file,
                   MC_CAPTURE_MASTER="127.0.0.1:%d" % ports[0],
                   MC_CAPTURE_META="http://127.0.0.1:%d/metadata" % ports[1],
                   MC_CAPTURE_HTTP_PORT=str(ports[1]),
                   PYTHONUNBUFFERED="1")
        client_log = open(os.path.join(log_dir, name + ".client.log"), "w")
        client = subprocess.Popen([VENV_PY, script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=client_log,
                                  text=True, env=env, cwd=HERE)
        client_log.close()
        ev("client started pid=%d" % client.pid)
        timer = threading.Timer(client_timeout, lambda: client.poll() is None and client.kill())
        timer.start()
        try:
            for line in client.stdout:
                line = line.rstrip("\n")
                print("  [%s] %s" % (name, line), flush=True)
                if line.startswith("@@RESTART"):
                    _, down, signame = line.split()
                    rc = master.kill(signame)
                    ev("master killed with SIG%s (rc=%s)" % (signame, rc))
                    time.sleep(float(down))
                    master.start()
                    ev("master restarted pid=%d on the same ports" % master.proc.pid)
                    client.stdin.write("@@OK\n")
                    client.stdin.flush()
            client_rc = client.wait()
        finally:
            timer.cancel()
        ev("client exited rc=%s" % client_rc)
        time.sleep(1.0)
    finally:
        stop(client, signal.SIGKILL, 5)
        rc = stop(master.proc, signal.SIGTERM, 15)
        ev("master stopped rc=%s" % rc)
        time.sleep(0.5)
        stop(tcpdump, signal.SIGINT, 10)
        td_log = open(td_err_path).read() if os.path.exists(td_err_path) else ""
        ev("tcpdump stopped: " + " / ".join(l for l in td_log.splitlines() if "packets" in l))

    if os.path.exists(pcap):  # tcpdump drops to its own user: hand the file back
        st = os.stat(pcap_dir)
        os.chown(pcap, st.st_uid, st.st_gid)
    # On lo every packet passes the filter twice (out + in) but is captured once.
    import re
    nums = {k: int(v) for v, k in re.findall(r"(\d+) packets? (captured|received by filter|dropped by kernel)", td_log)}
    if nums.get("dropped by kernel", 0) or nums.get("captured", 0) * 2 != nums.get("received by filter", 0):
        print("WARNING: tcpdump may have missed packets in %s: %s" % (name, nums))
    client_ops = json.load(open(ops_file)) if os.path.exists(ops_file) else None
    meta = {
        "scenario": name,
        "script": "test/store/capture_%s.py" % name,
        "wheel": "%s==%s" % (WHEEL, wheel_version()),
        "master_port": ports[0], "http_metadata_port": ports[1], "metrics_port": ports[2],
        "master_argv": [os.path.basename(master.argv[0])] + master.argv[1:],
        "master_env": {"MC_FORCE_TCP": "1"},
        "client_env": {"MC_FORCE_TCP": "1", "MC_TCP_BIND_ADDRESS": "127.0.0.1"},
        "client_exit_code": client_rc,
        "driver_events": events,
        "tcpdump": [l for l in td_log.splitlines() if "packets" in l],
        "client": client_ops,
    }
    with open(os.path.join(pcap_dir, name + ".meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if client_rc != 0:
        print("WARNING: scenario %s client exited with %s (see %s)" % (name, client_rc, log_dir))
    return client_rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--log-dir", help="where master/client/tcpdump logs go (default: a new temp dir)")
    ap.add_argument("--pcap-dir", default=os.path.join(HERE, "pcap"))
    ap.add_argument("--client-timeout", type=float, default=180)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("note: tcpdump on lo needs root (or CAP_NET_RAW)", file=sys.stderr)
    names = a.scenarios or sorted(os.path.basename(p)[len("capture_"):-3]
                                  for p in glob.glob(os.path.join(HERE, "capture_*.py"))
                                  if not p.endswith("capture_common.py"))
    log_dir = a.log_dir or tempfile.mkdtemp(prefix="mc-store-capture-")
    os.makedirs(log_dir, exist_ok=True)
    os.makedirs(a.pcap_dir, exist_ok=True)
    print("logs in", log_dir, flush=True)
    bad = []
    for n in names:
        if run_scenario(n, log_dir, a.pcap_dir, a.client_timeout) != 0:
            bad.append(n)
    print("done; logs in", log_dir, "; failed:", bad or "none")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
