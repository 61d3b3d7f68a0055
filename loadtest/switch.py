#!/usr/bin/env python3
"""A backend switch under load: N model switches of the managed local backend while
clients stream, with a cloud fallback configured.

  loadtest/switch.py                    # 6 switches, 8 streaming clients
  loadtest/switch.py --switches 10 --clients 16 --out loadtest/results/switch.md

Builds the release binaries and a FROM-scratch image of mock-llm (the "vLLM" the
controller runs, 1 s simulated load time, 32 tokens at 5 ms), starts a second mock-llm
as the cloud fallback, lets Switchyard select the backend, streams for a steady phase,
then switches the model N times (alternating two models) while the clients stream.

Reports requests ok / failed / truncated / fallen back (served by the cloud while the
local backend was draining or starting), the p50/p99 stream latency in the steady
phase and during the switches, and the time from "select" to `ready`. Needs a Docker
engine (no registry: the image is built locally).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "switchyard", "target")
SECRET = "switch-bench-secret"
IMAGE = "switchyard-bench/mock-llm:dev"
INSTANCE = "switch-bench"
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {url}")


def docker(*args, check=True):
    r = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def cleanup():
    for p in PROCS:
        try:
            p.terminate()
            p.wait(timeout=10)
        except Exception:
            p.kill()
    ids = docker("ps", "-aq", "--filter", f"label=switchyard.instance={INSTANCE}", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)


def build_image(mock):
    d = tempfile.mkdtemp()
    shutil.copy(mock, os.path.join(d, "mock-llm"))
    out = subprocess.run(["ldd", mock], capture_output=True, text=True).stdout
    for lib in [w for w in out.split() if w.startswith("/")]:
        dst = os.path.join(d, lib.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(lib, dst)
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write('FROM scratch\nCOPY . /\nENTRYPOINT ["/mock-llm"]\n')
    docker("build", "-q", "-t", IMAGE, d)
    shutil.rmtree(d)


def admin(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"x-admin-secret": SECRET, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def wait_ready(base, model, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        s = admin(base, "GET", "/admin/inference")
        if s["state"] == "ready" and s["model"] == model:
            return
        time.sleep(0.02)
    raise SystemExit(f"never ready with {model}: {s}")


class Load:
    """Streaming clients; each result is (t_start, t_end, outcome, provider)."""

    def __init__(self, base, models, clients):
        self.base, self.models, self.clients = base, models, clients
        self.stop = threading.Event()
        self.results = []
        self.lock = threading.Lock()

    def worker(self, i):
        n = 0
        while not self.stop.is_set():
            model = self.models[(i + n) % len(self.models)]
            n += 1
            body = json.dumps({"model": model, "stream": True, "max_tokens": 32,
                               "messages": [{"role": "user", "content": f"client {i} request {n}"}]}).encode()
            req = urllib.request.Request(self.base + "/v1/chat/completions", data=body,
                                         headers={"content-type": "application/json"})
            t0 = time.time()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    provider = r.headers.get("x-switchyard-provider", "")
                    text = r.read().decode()
                ok = text.rstrip().endswith("data: [DONE]") and '"error"' not in text
                outcome = "ok" if ok else "truncated"
            except Exception:
                provider, outcome = "", "failed"
            with self.lock:
                self.results.append((t0, time.time(), outcome, provider))

    def start(self):
        self.threads = [threading.Thread(target=self.worker, args=(i,)) for i in range(self.clients)]
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switches", type=int, default=6)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--steady", type=float, default=10.0, help="seconds of steady load before the switches")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("no Docker engine answers (docker info)")
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    sw = os.path.join(TARGET, "release", "switchyard")
    mock = os.path.join(TARGET, "release", "mock-llm")
    cleanup()
    build_image(mock)
    cloud, gw, gwa = free_port(), free_port(), free_port()
    PROCS.append(subprocess.Popen([mock, "--listen", f"127.0.0.1:{cloud}", "--model", "sw-1", "--model", "sw-2",
                                   "--itl-ms", "5", "--tokens", "32"], stdout=subprocess.DEVNULL))
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[server]
listen = "127.0.0.1:{gw}"
admin_listen = "127.0.0.1:{gwa}"

[local]
kind = "vllm"

[routing]
strategy = "local-first"

[[providers]]
name = "cloud"
kind = "openai-compatible"
base_url = "http://127.0.0.1:{cloud}/v1"
api_key = "sk-cloud"
models = ["sw-*"]

[auth]
admin_secret_env = "SWITCH_SECRET"

[log]
access = false

[control]
enabled = true
instance = "{INSTANCE}"
health_interval = "1s"
start_timeout = "60s"
drain_timeout = "10s"
stop_grace = "5s"

[control.backends.vllm]
image = "{IMAGE}"
container_name = "switchyard-bench-vllm"
args = ["--listen", "0.0.0.0:8000", "--model", "{{model}}", "--itl-ms", "5", "--tokens", "32", "--startup-ms", "1000"]
port = 8000
gpus = "none"
""")
    cfg.close()
    log = open(os.path.join(tempfile.gettempdir(), "switchyard-switch-bench.log"), "w")
    PROCS.append(subprocess.Popen([sw, "--config", cfg.name], stdout=subprocess.DEVNULL, stderr=log,
                                  env=dict(os.environ, SWITCH_SECRET=SECRET)))
    base, abase = f"http://127.0.0.1:{gw}", f"http://127.0.0.1:{gwa}"
    wait_http(abase + "/health")
    t = time.time()
    admin(abase, "POST", "/admin/inference/select", {"backend": "vllm", "model": "sw-1"})
    wait_ready(abase, "sw-1")
    to_ready = [time.time() - t]
    load = Load(base, ["sw-1", "sw-2"], a.clients)
    load.start()
    time.sleep(a.steady)
    steady_end = time.time()
    windows = []
    model = "sw-1"
    for i in range(a.switches):
        model = "sw-2" if model == "sw-1" else "sw-1"
        t = time.time()
        admin(abase, "POST", "/admin/inference/switch-model", {"model": model})
        wait_ready(abase, model)
        to_ready.append(time.time() - t)
        windows.append((t, time.time()))
        time.sleep(1.0)
    load.finish()
    cleanup()

    def during(r):
        return any(w0 <= r[0] <= w1 or w0 <= r[1] <= w1 for w0, w1 in windows)

    res = load.results
    steady = [r for r in res if r[1] <= steady_end]
    switching = [r for r in res if during(r)]
    count = lambda rs, o: sum(1 for r in rs if r[2] == o)
    lat = lambda rs: [(r[1] - r[0]) * 1000 for r in rs if r[2] == "ok"]
    lines = [
        f"# Switch under load {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores",
        "",
        f"{a.switches} model switches (vLLM profile, mock-llm image with a 1 s load time), "
        f"{a.clients} streaming clients (32 tokens at 5 ms), cloud fallback configured.",
        "",
        "| requests | ok | failed | truncated | fallen back to the cloud | served locally |",
        "|---|---|---|---|---|---|",
        f"| {len(res)} | {count(res, 'ok')} | {count(res, 'failed')} | {count(res, 'truncated')} | "
        f"{sum(1 for r in res if r[3] == 'cloud')} | {sum(1 for r in res if r[3] == 'local')} |",
        "",
        "| phase | requests | p50 ms | p99 ms | p99 vs steady |",
        "|---|---|---|---|---|",
        f"| steady | {len(steady)} | {pct(lat(steady), 0.5):.1f} | {pct(lat(steady), 0.99):.1f} | 1.00x |",
        f"| during switches | {len(switching)} | {pct(lat(switching), 0.5):.1f} | {pct(lat(switching), 0.99):.1f} | "
        f"{pct(lat(switching), 0.99) / pct(lat(steady), 0.99):.2f}x |",
        "",
        "| select → ready | first start | switches p50 | switches max |",
        "|---|---|---|---|",
        f"| seconds | {to_ready[0]:.2f} | {statistics.median(to_ready[1:]):.2f} | {max(to_ready[1:]):.2f} |",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    if count(res, "failed") or count(res, "truncated"):
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
