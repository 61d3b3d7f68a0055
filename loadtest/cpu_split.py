#!/usr/bin/env python3
"""Where a request's CPU goes: each process's user and system time per request (the
proxy, the upstream and, for the full chain, redis-server), and Redis's own command
statistics, for one build under one wrk load.

  loadtest/cpu_split.py nginx                               # nginx proxy_pass, for reference
  loadtest/cpu_split.py pass  [--binary B] [--conns 32]     # Switchyard passthrough
  loadtest/cpu_split.py chain [--binary B] [--redis 'write_window = "0ms"']
  loadtest/cpu_split.py pass  --perf /tmp/pass.data         # and a CPU-time profile of the proxy
  loadtest/cpu_split.py chain --threads                     # and the proxy's CPU per thread

`--perf` samples the proxy with `perf record -e cpu-clock` (a software clock, so it works
where the CPU's counters are not available) through the timed run, user and kernel
code both: `perf report -i FILE --sort dso,sym` then shows where the time goes, the
kernel's share included, on the real CPU rather than under valgrind.

`chain` is auth + limits on Redis + a cache miss on every request (wrk's chain.lua).
Run two builds (or two settings) one after the other, alternating, and compare: on a
shared machine only such pairs mean anything.
"""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402


def ticks(pid):
    """user ticks, system ticks, minor page faults, voluntary and involuntary context
    switches (summed over the process's threads)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    vol = invol = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/status").read()
        except OSError:
            continue
        vol += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", st, re.M).group(1))
        invol += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", st, re.M).group(1))
    return int(f[11]), int(f[12]), int(f[7]), vol, invol


def thread_ticks(pid):
    """{(thread id, name): (user ticks, system ticks)} for each of the process's threads."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[(t, name)] = (int(f[11]), int(f[12]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["nginx", "pass", "chain"])
    ap.add_argument("--binary", help="the switchyard binary (default: the release build)")
    ap.add_argument("--conns", default="32")
    ap.add_argument("--secs", type=int, default=6)
    ap.add_argument("--redis", default="", help="extra [redis] lines for the chain")
    ap.add_argument("--perf", help="record a cpu-clock profile of the proxy into this file")
    ap.add_argument("--threads", action="store_true", help="the proxy's CPU per thread too")
    a = ap.parse_args()
    R.ensure_tools()
    up = R.free_port()
    pu = R.nginx_upstream(up)
    port, admin = R.free_port(), R.free_port()
    extra, key, script, pr, rp = "", None, "chat.lua", None, None
    if a.mode == "chain":
        R.ensure_redis()
        rp = R.free_port()
        pr = R.redis_server(rp)
        key = R.BENCH_KEY
        extra = R.tenant_config(rp, a.redis) + "\n[cache]\nenabled = true\n"
        script = "chain.lua"
    if a.mode == "nginx":
        proxy = R.nginx_proxy(port, up)
    else:
        proxy = R.switchyard(port, admin, up, extra=extra, key=key, binary=a.binary)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    env = dict(os.environ, KEY=key or "")
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    wrk = ["wrk", "-t1", "-c" + a.conns, "-s", lua, url]
    subprocess.run(wrk[:3] + ["-d2s"] + wrk[3:], env=env, capture_output=True)
    procs = {"proxy": proxy.pid, "upstream": pu.pid}
    if pr:
        procs["redis"] = pr.pid
        R.redis_cmd(rp, "CONFIG", "RESETSTAT")
    rec = None
    if a.perf:
        rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-o", a.perf,
                                "-p", str(proxy.pid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # perf attaches before the timed run starts
    before = {k: ticks(p) for k, p in procs.items()}
    tb = thread_ticks(proxy.pid) if a.threads else {}
    out = subprocess.run(wrk[:3] + [f"-d{a.secs}s"] + wrk[3:], env=env, capture_output=True,
                         text=True).stdout
    after = {k: ticks(p) for k, p in procs.items()}
    ta = thread_ticks(proxy.pid) if a.threads else {}
    if rec:
        rec.send_signal(2)
        rec.wait()
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    print(f"{a.mode} at {a.conns} connections: {rps} req/s")
    for k in procs:
        u = (after[k][0] - before[k][0]) * 1e6 / R.TICK / n
        s = (after[k][1] - before[k][1]) * 1e6 / R.TICK / n
        d = [(after[k][i] - before[k][i]) / n for i in (2, 3, 4)]
        print(f"  {k:9s} user {u:5.1f}  sys {s:5.1f}  µs per request;"
              f" per request {d[0]:.3f} page faults, {d[1]:.3f} + {d[2]:.3f} context switches"
              f" (voluntary + not)")
    for t in sorted(ta):
        u = (ta[t][0] - tb.get(t, (0, 0))[0]) * 1e6 / R.TICK / n
        s = (ta[t][1] - tb.get(t, (0, 0))[1]) * 1e6 / R.TICK / n
        if u + s > 0:
            print(f"    thread {t[1]:16s} user {u:5.1f}  sys {s:5.1f}  µs per request")
    if pr:
        for line in R.redis_cmd(rp, "INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line)
            if m and int(m.group(2)) > 0:
                print(f"  redis {m.group(1)}: {m.group(2)} calls, {int(m.group(3)) / n:.2f} µs per request")


if __name__ == "__main__":
    try:
        main()
    finally:
        R.cleanup()
