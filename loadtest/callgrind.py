#!/usr/bin/env python3
"""Instructions per request, and where they go, for one build under a light wrk load.

  loadtest/callgrind.py pass  [--binary B] [--top 40]     # Switchyard passthrough
  loadtest/callgrind.py chain [--binary B]                # auth + limits on Redis + a cache miss
  loadtest/callgrind.py pass --callers memcpy             # who calls a function, by cost
  loadtest/callgrind.py nginx                             # nginx proxy_pass, for reference
  loadtest/callgrind.py bare                              # the bare Pingora example
  loadtest/callgrind.py pass --conns 128 --cache-sim      # cache misses with 128 requests in flight

The proxy runs under valgrind's callgrind in front of nginx `return 200`; after a
warm-up its counters are zeroed, wrk sends requests for a few seconds at 4 connections,
and the counters are dumped. The total is divided by the requests wrk completed; the
top functions are listed by their own (exclusive) instructions per request. Unlike the
wall clock on a shared machine, these counts repeat to within about 1 % between runs,
so two builds can be compared one after the other.

valgrind hides the CPU's SHA extensions, so SHA-256 (the cache key, the API key) shows
in software here: about 14k instructions per chain request that cost a few hundred
cycles outside valgrind.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402


def parse(path, event=None):
    """Total cost; self cost per function name; inclusive cost and call count of each
    caller → callee edge; the totals of every event recorded. The cost is the first
    event (instructions) unless `event` names another (with `--cache-sim`: `DLmr`, ...)."""
    names, self_cost, edges = {}, collections.Counter(), collections.Counter()
    counts = collections.Counter()
    fn = cfn = None
    after_calls = False
    total = None
    col = 0
    events, totals = ["Ir"], []

    def name(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?", spec)
        if not m:
            return spec
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))

    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("events:"):
            events = line.split()[1:]
            col = events.index(event) if event else 0
        elif line.startswith("fn="):
            fn = name(line[3:])
        elif line.startswith("cfn="):
            cfn = name(line[4:])
        elif line.startswith("calls="):
            after_calls = True
            counts[(fn, cfn)] += int(line[6:].split()[0])
        elif line.startswith("totals:") or line.startswith("summary:"):
            totals = [int(x) for x in line.split()[1:]]
            total = totals[col]
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            cost = int(parts[1 + col]) if len(parts) > 1 + col else 0
            if after_calls:
                edges[(fn, cfn)] += cost
                after_calls = False
            else:
                self_cost[fn] += cost
    return total or sum(self_cost.values()), self_cost, edges, counts, dict(zip(events, totals))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["pass", "chain", "nginx", "bare"])
    ap.add_argument("--binary", help="the switchyard binary (default: the release build)")
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--callers", help="list the callers of functions whose name contains this")
    ap.add_argument("--out", help="keep the callgrind output here")
    ap.add_argument("--event", help="rank by this event instead of instructions (with --cache-sim:"
                    " DLmr, DLmw: misses in the simulated 1 MiB last level)")
    ap.add_argument("--conns", type=int, default=4, help="wrk's connections (requests in flight)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="simulate the caches too: misses per request in the first and last level")
    a = ap.parse_args()
    R.ensure_tools()
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    out = a.out or os.path.join(tempfile.mkdtemp(prefix="callgrind-"), "out")
    up = R.free_port()
    R.nginx_upstream(up)
    port, admin = R.free_port(), R.free_port()
    extra, key, script = "", None, "chat.lua"
    if a.mode == "chain":
        R.ensure_redis()
        rp = R.free_port()
        R.redis_server(rp)
        key = R.BENCH_KEY
        extra = R.tenant_config(rp) + "\n[cache]\nenabled = true\n"
        script = "chain.lua"
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if a.cache_sim:
        wrap += ["--cache-sim=yes", "--LL=1048576,16,64"]  # the last level as this CPU's L2
    if a.mode == "nginx":
        proxy = R.nginx_proxy(port, up, wrap=wrap)
    elif a.mode == "bare":
        proxy = R.bare(port, up, wrap=wrap)
    else:
        proxy = R.switchyard(port, admin, up, extra=extra, key=key, binary=a.binary, wrap=wrap)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    env = dict(os.environ, KEY=key or "")
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    wrk = ["wrk", "-t1", f"-c{a.conns}", "-s", lua, url]
    subprocess.run(wrk[:3] + ["-d3s"] + wrk[3:], env=env, capture_output=True)
    subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, capture_output=True)
    res = subprocess.run(wrk[:3] + [f"-d{a.secs}s"] + wrk[3:], env=env, capture_output=True,
                         text=True).stdout
    subprocess.run(["callgrind_control", "-d", str(proxy.pid)], check=True, capture_output=True)
    n = int(re.search(r"(\d+) requests in", res).group(1))
    dumps = sorted(p for p in os.listdir(os.path.dirname(out) or ".")
                   if p.startswith(os.path.basename(out)))
    last = os.path.join(os.path.dirname(out) or ".", dumps[-1])
    total, self_cost, edges, counts, summary = parse(last, a.event)
    ir = summary.get("Ir", total)
    print(f"{a.mode}: {n} requests, {ir / n / 1000:.1f}k instructions per request ({last})")
    if a.cache_sim:
        print("  per request: " + ", ".join(f"{e} {t / n:.0f}" for e, t in summary.items()))
    if a.event:
        print(f"ranked by {a.event}: {total / n:.0f} per request")
    if a.callers:
        rows = collections.Counter()
        for (caller, callee), c in edges.items():
            if a.callers in (callee or ""):
                rows[(caller, callee)] += c
        print("instructions per request (inclusive), calls per request, caller -> callee")
        for (caller, callee), c in rows.most_common(a.top):
            k = counts[(caller, callee)] / n
            print(f"{c / n:9.0f} {k:6.2f}  {caller}  ->  {callee}")
        return
    for f, c in self_cost.most_common(a.top):
        print(f"{c / n:9.0f}  {f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        R.cleanup()
