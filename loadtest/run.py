#!/usr/bin/env python3
"""Side-by-side load test: direct-to-upstream, nginx proxy_pass, a bare Pingora
passthrough and Switchyard, in one run on one machine, against the same upstreams.

  loadtest/run.py                       # everything, ~6 minutes
  loadtest/run.py --quick               # 1 round, 3 s per point, no memory test
  loadtest/run.py --only chat --conns 32

Upstreams: nginx `return 200` with a ~400-byte chat.completion (the fastest possible
upstream) for non-streaming; mock-llm (16 tokens, no delay) for streaming. Every proxy
runs one worker thread/process. For each point it prints requests/s, p50/p99 latency
(wrk), the proxy's CPU time per request (from /proc/<pid>/stat), and the ratios.
Then: the time a streamed first byte spends in the proxy (client TTFB through the proxy
minus direct, p50/p99), and the proxy's memory per open stream at 1,000 and 5,000 open
streams. Results are printed as Markdown; --out FILE also writes them there.
"""
import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "switchyard", "target")
TICK = os.sysconf("SC_CLK_TCK")
PROCS = []
MODEL = "bench-model"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {url}")


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    PROCS.append(p)
    return p


def cleanup():
    for p in PROCS:
        try:
            p.kill()
        except Exception:
            pass


def ensure_redis():
    if not shutil.which("redis-server"):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env,
                       stdout=subprocess.DEVNULL)


def ensure_tools():
    missing = [pkg for cmd, pkg in (("nginx", "nginx-light"), ("wrk", "wrk")) if not shutil.which(cmd)]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + missing, check=True, env=env,
                       stdout=subprocess.DEVNULL)


NGINX_COMMON = """master_process off; daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log crit;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d}; keepalive_requests 1000000;
{body}
}}
"""

CHAT_JSON = ('{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"%s",'
             '"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today? '
             'This is a fixed benchmark answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,'
             '"completion_tokens":16,"total_tokens":28}}') % MODEL


def nginx(body, wrap=()):
    d = tempfile.mkdtemp(prefix="sy-nginx-")
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_COMMON.format(d=d, body=body))
    return start(list(wrap) + ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")])


def nginx_upstream(port):
    body = f"""  server {{ listen 127.0.0.1:{port};
    location = /v1/models {{ default_type application/json; return 200 '{{"object":"list","data":[{{"id":"{MODEL}","object":"model","owned_by":"bench"}}]}}'; }}
    location = /health {{ return 200 'ok'; }}
    location / {{ default_type application/json; return 200 '{CHAT_JSON}'; }}
  }}"""
    p = nginx(body)
    wait_http(f"http://127.0.0.1:{port}/health")
    return p


def nginx_proxy(port, up, wrap=()):
    body = f"""  upstream up {{ server 127.0.0.1:{up}; keepalive 256; }}
  server {{ listen 127.0.0.1:{port};
    location = /health {{ return 200 'ok'; }}
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }}
  }}"""
    p = nginx(body, wrap)
    wait_http(f"http://127.0.0.1:{port}/health", 60 if wrap else 20)
    return p


BINARY = None


def sy_bin():
    """The Switchyard binary measured: `--binary`, or the release build."""
    return BINARY or os.path.join(TARGET, "release", "switchyard")


def switchyard(port, admin, up, extra="", key=None, binary=None, wrap=()):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
threads = 1

[local]
kind = "vllm"
url = "http://127.0.0.1:{up}"

[routing]
strategy = "local-only"
auto_detect = false

[log]
access = {str(os.environ.get("SY_ACCESS_LOG", "true")).lower()}
{extra}
""")
    cfg.close()
    p = start([*wrap, binary or sy_bin(), "--config", cfg.name])
    wait_http(f"http://127.0.0.1:{admin}/health")
    end = time.time() + 20
    while time.time() < end:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                         headers={"Authorization": f"Bearer {key}"} if key else {})
            if MODEL in urllib.request.urlopen(req, timeout=1).read().decode():
                return p
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit("switchyard did not discover the model")


BENCH_KEY = "sk-bench-key-0001"


def tenant_config(redis_port, redis_extra=""):
    """The tenancy benchmarks' configuration: Redis on `redis_port` and one API key
    (BENCH_KEY) with limits far above any load."""
    return f"""
[redis]
url = "redis://127.0.0.1:{redis_port}"
refresh_interval = "5s"
{redis_extra}

[auth]
enabled = true

[[auth.keys]]
key = "{BENCH_KEY}"
tenant = "bench"
requests_per_minute = 100000000
tokens_per_minute = 1000000000
"""


def redis_server(port):
    p = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    end = time.time() + 10
    while time.time() < end:
        try:
            if redis_cmd(port, "PING").startswith("+PONG"):
                return p
        except OSError:
            time.sleep(0.1)
    raise SystemExit("redis-server did not start")


def redis_cmd(port, *args):
    """One RESP command; returns the raw reply text."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        req = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        s.sendall(req.encode())
        data = b""
        s.settimeout(2)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            if data.startswith(b"+") or data.startswith(b"-") or data.startswith(b":"):
                break
            if data.startswith(b"$"):
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
        return data.decode(errors="replace")


def commandstats(port):
    text = redis_cmd(port, "INFO", "commandstats")
    out = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, stats = line[len("cmdstat_"):].split(":", 1)
            calls = dict(kv.split("=") for kv in stats.split(","))["calls"]
            out[name] = int(calls)
    return out


def redis_calls(admin):
    """The calls the gateway sent to Redis so far (its own counter, switchyard_redis_calls_total:
    a script call counts once; the commands a script runs inside Redis are not calls)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("switchyard_redis_calls_total{"))


def bare(port, up, wrap=()):
    p = start(list(wrap) + [os.path.join(TARGET, "release", "examples", "bare_pingora"),
                            f"127.0.0.1:{port}", f"127.0.0.1:{up}", "--wbuf", "16384"])
    end = time.time() + (30 if wrap else 10)
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.1)
    raise SystemExit("bare pingora did not start")


def mock(port, *args):
    p = start([os.path.join(TARGET, "release", "mock-llm"), "--listen", f"127.0.0.1:{port}", "--model", MODEL,
               "--threads", "1", *args])
    wait_http(f"http://127.0.0.1:{port}/health")
    return p


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def parse_latency(s):
    """wrk's latency text (e.g. 137.00us, 1.20ms, 2.00s, 1.00m) in ms."""
    m = re.match(r"([\d.]+)([a-z]+)", s)
    if not m:
        return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}.get(u, float("nan"))


def wrk(url, conns, secs, script, env=None):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, env={**os.environ, "MODEL": MODEL, **(env or {})}).stdout
    if "Requests/sec" not in out:
        raise SystemExit(f"wrk failed against {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = parse_latency(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = parse_latency(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx responses\n{out}")
    return rps, reqs, p50, p99


def measure(targets, mode, conns, secs, rounds):
    script = os.path.join(ROOT, "loadtest", "chat.lua" if mode == "chat" else "stream.lua")
    results = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, pid) in targets.items():
            before = cpu_ticks(pid) if pid else 0
            rps, reqs, p50, p99 = wrk(url, conns, secs, script)
            cpu_us = ((cpu_ticks(pid) - before) / TICK * 1e6 / reqs) if pid else None
            results[name].append((rps, p50, p99, cpu_us))
    med = {}
    for name, rs in results.items():
        rs.sort(key=lambda r: r[0])
        med[name] = rs[len(rs) // 2]
    return med


async def ttfb_once(port, body):
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(body)
    await w.drain()
    await r.read(1)
    t = time.perf_counter() - t0
    w.close()
    return t


def ttfb(ports, n=400):
    """Client time to the first response byte of a stream, per target, sequential."""
    payload = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    out = {}

    async def run():
        for name, port in ports.items():
            for _ in range(30):
                await ttfb_once(port, req)
        samples = {name: [] for name in ports}
        for _ in range(n):
            for name, port in ports.items():
                samples[name].append(await ttfb_once(port, req))
        for name, s in samples.items():
            s.sort()
            out[name] = (s[len(s) // 2] * 1000, s[int(len(s) * 0.99)] * 1000)

    asyncio.run(run())
    return out


async def hold_streams(port, n, pid):
    payload = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    conns = []
    sem = asyncio.Semaphore(200)

    async def one():
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req)
            await w.drain()
            await r.readuntil(b"data: ")  # the stream is open and flowing
            conns.append((r, w))

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(0.5)
    rss = rss_kib(pid)
    for _, w in conns:
        w.close()
    return rss


def memory_per_stream(sy_port, pid, counts):
    res = {}
    for n in counts:
        base = rss_kib(pid)
        held = asyncio.run(hold_streams(sy_port, n, pid))
        res[n] = (base, held, (held - base) / n)
        time.sleep(2)
    return res


def dialects(a, emit):
    """Translated traffic against a passthrough of the same answer, one upstream
    (mock-llm speaking both APIs, 16 tokens)."""
    up, gw, gwa = free_port(), free_port(), free_port()
    mock(up, "--tokens", "16", "--model", "claude-bench")
    extra = f"""
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://127.0.0.1:{up}"
api_key = "sk-bench"
models = ["claude-bench"]
"""
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[server]
listen = "127.0.0.1:{gw}"
admin_listen = "127.0.0.1:{gwa}"
threads = 1

[local]
kind = "vllm"
url = "http://127.0.0.1:{up}"
messages = "translate"

[routing]
strategy = "local-first"
auto_detect = false

[log]
access = {str(os.environ.get("SY_ACCESS_LOG", "true")).lower()}
{extra}
""")
    cfg.close()
    p = start([sy_bin(), "--config", cfg.name])
    wait_http(f"http://127.0.0.1:{gwa}/health")
    end = time.time() + 20
    while time.time() < end:
        try:
            if MODEL in urllib.request.urlopen(f"http://127.0.0.1:{gw}/v1/models", timeout=1).read().decode():
                break
        except Exception:
            pass
        time.sleep(0.1)
    probe = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}).encode()
    try:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{gw}/v1/chat/completions", data=probe,
                                                      headers={"content-type": "application/json"}), timeout=5).read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"the dialects gateway does not answer: {e.code} {e.read()[:300]!r}")
    chat = os.path.join(ROOT, "loadtest", "chat_any.lua")
    msgs = os.path.join(ROOT, "loadtest", "messages.lua")
    base = f"http://127.0.0.1:{gw}"
    cases = [
        ("passthrough (OpenAI -> OpenAI)", f"{base}/v1/chat/completions", chat, MODEL),
        ("OpenAI client -> Anthropic upstream", f"{base}/v1/chat/completions", chat, "claude/claude-bench"),
        ("Anthropic client -> OpenAI upstream", f"{base}/v1/messages", msgs, MODEL),
        ("passthrough (Anthropic -> Anthropic)", f"{base}/v1/messages", msgs, "claude/claude-bench"),
    ]
    emit()
    emit("## Dialects: translated against passthrough (upstream: mock-llm, 16 tokens)")
    emit()
    emit("| conns | mode | case | req/s | p50 ms | p99 ms | CPU µs/req | vs passthrough to the same upstream API |")
    emit("|---|---|---|---|---|---|---|---|")
    for c in [int(x) for x in a.conns.split(",")]:
        for stream in ("0", "1"):
            rows = {}
            for name, url, script, model in cases:
                runs = []
                for _ in range(a.rounds):
                    before = cpu_ticks(p.pid)
                    rps, reqs, p50, p99 = wrk(url, c, a.duration, script, env={"STREAM": stream, "MODEL": model})
                    runs.append((rps, p50, p99, (cpu_ticks(p.pid) - before) / TICK * 1e6 / reqs))
                runs.sort(key=lambda r: r[0])
                rows[name] = runs[len(runs) // 2]
            for name, (rps, p50, p99, cpu) in rows.items():
                # Against the passthrough to the same upstream API: the same upstream work,
                # so the difference is the translation.
                ref = rows["passthrough (OpenAI -> OpenAI)"] if name.endswith("OpenAI upstream") else rows["passthrough (Anthropic -> Anthropic)"]
                ratio = "" if name.startswith("passthrough") else f"{rps / ref[0]:.2f}x"
                emit(f"| {c} | {'stream' if stream == '1' else 'whole'} | {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {cpu:.1f} | {ratio} |")
    # First streamed byte through each path (sequential, new connection each).
    emit()
    emit("| case | first event p50 ms | p99 ms | added p50 ms | against |")
    emit("|---|---|---|---|---|")
    samples = ttfb_paths(gw, up)
    for name, (p50, p99) in samples.items():
        if name.startswith("direct"):
            ref = None
        elif name.startswith("passthrough"):
            ref = "direct (mock-llm, OpenAI API)" if "OpenAI ->" in name else "direct (mock-llm, Anthropic API)"
        else:
            ref = "passthrough (OpenAI -> OpenAI)" if name.endswith("OpenAI upstream") else "passthrough (Anthropic -> Anthropic)"
        added = f"{p50 - samples[ref][0]:+.3f}" if ref else ""
        emit(f"| {name} | {p50:.3f} | {p99:.3f} | {added} | {ref or ''} |")


async def first_body_byte(port, body):
    """Time to the first byte of the response body (the first event of a stream)."""
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(body)
    await w.drain()
    await r.readuntil(b"\r\n\r\n")
    await r.read(1)
    t = time.perf_counter() - t0
    w.close()
    return t


def ttfb_paths(gw, up, n=300):
    def req(path, body):
        payload = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    oai = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    anth = {"model": MODEL, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    claude = dict(anth, model="claude-bench")
    paths = {
        "direct (mock-llm, OpenAI API)": (up, req("/v1/chat/completions", oai)),
        "direct (mock-llm, Anthropic API)": (up, req("/v1/messages", claude)),
        "passthrough (OpenAI -> OpenAI)": (gw, req("/v1/chat/completions", oai)),
        "passthrough (Anthropic -> Anthropic)": (gw, req("/v1/messages", dict(claude, model="claude/claude-bench"))),
        "OpenAI client -> Anthropic upstream": (gw, req("/v1/chat/completions", dict(oai, model="claude/claude-bench"))),
        "Anthropic client -> OpenAI upstream": (gw, req("/v1/messages", anth)),
    }
    out = {}

    async def run():
        samples = {k: [] for k in paths}
        for _ in range(20):
            for k, (port, body) in paths.items():
                await first_body_byte(port, body)
        for _ in range(n):
            for k, (port, body) in paths.items():
                samples[k].append(await first_body_byte(port, body))
        for k, s in samples.items():
            s.sort()
            out[k] = (s[len(s) // 2] * 1000, s[int(len(s) * 0.99)] * 1000)

    asyncio.run(run())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per point (median kept)")
    ap.add_argument("--conns", default="1,32,128")
    ap.add_argument("--only", choices=["chat", "stream", "memory", "tenancy", "dialects"], help="one part only")
    ap.add_argument("--streams", default="1000,5000", help="open streams for the memory test ('' skips)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="also write the Markdown report here")
    ap.add_argument("--baseline", help="another switchyard binary (an earlier build) measured side by side "
                                       "as 'baseline' in the chat and stream parts")
    ap.add_argument("--binary", help="the switchyard binary measured (default: the release build), "
                                     "for example the profile-guided one from loadtest/pgo.py")
    a = ap.parse_args()
    global BINARY
    BINARY = a.binary
    if a.quick:
        a.duration, a.rounds, a.streams = 3, 1, ""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_tools()
    if not a.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--example", "bare_pingora"], cwd=ROOT, check=True)

    up, nx, by, sy, sya = (free_port() for _ in range(5))
    mk, nxm, bym, sym, syma = (free_port() for _ in range(5))
    nginx_upstream(up)
    n1 = nginx_proxy(nx, up)
    b1 = bare(by, up)
    s1 = switchyard(sy, sya, up)
    mock(mk, "--tokens", "16")
    n2 = nginx_proxy(nxm, mk)
    b2 = bare(bym, mk)
    s2 = switchyard(sym, syma, mk)
    base = {}
    if a.baseline:
        for mode, upstream in (("chat", up), ("stream", mk)):
            bp, bpa = free_port(), free_port()
            base[mode] = (bp, switchyard(bp, bpa, upstream, binary=a.baseline))

    lines = []

    def emit(s=""):
        print(s, flush=True)
        lines.append(s)

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    emit(f"# Load test {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores ({cpu})")
    emit(f"wrk -t1, {a.duration}s per run, median of {a.rounds}; each proxy one worker; CPU = proxy's user+sys time per request")
    modes = [a.only] if a.only in ("chat", "stream") else [] if a.only else ["chat", "stream"]
    for mode in modes:
        emit()
        if mode == "chat":
            targets = {"direct": (f"http://127.0.0.1:{up}/v1/chat/completions", None),
                       "nginx": (f"http://127.0.0.1:{nx}/v1/chat/completions", n1.pid),
                       "pingora": (f"http://127.0.0.1:{by}/v1/chat/completions", b1.pid),
                       "switchyard": (f"http://127.0.0.1:{sy}/v1/chat/completions", s1.pid)}
            emit("## Non-streaming chat (upstream: nginx return 200)")
        else:
            targets = {"direct": (f"http://127.0.0.1:{mk}/v1/chat/completions", None),
                       "nginx": (f"http://127.0.0.1:{nxm}/v1/chat/completions", n2.pid),
                       "pingora": (f"http://127.0.0.1:{bym}/v1/chat/completions", b2.pid),
                       "switchyard": (f"http://127.0.0.1:{sym}/v1/chat/completions", s2.pid)}
            emit("## Streaming chat, 16-token SSE streams (upstream: mock-llm)")
        if mode in base:
            port, proc = base[mode]
            targets["baseline"] = (f"http://127.0.0.1:{port}/v1/chat/completions", proc.pid)
        emit()
        emit("| conns | target | req/s | p50 ms | p99 ms | CPU µs/req | vs nginx | vs bare pingora | vs direct |")
        emit("|---|---|---|---|---|---|---|---|---|")
        for c in [int(x) for x in a.conns.split(",")]:
            med = measure(targets, mode, c, a.duration, a.rounds)
            for name, (rps, p50, p99, cpu_us) in med.items():
                ratio = lambda other: f"{rps / med[other][0]:.2f}x" if other in med and other != name else ""
                emit(f"| {c} | {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | "
                     f"{'' if cpu_us is None else f'{cpu_us:.1f}'} | {ratio('nginx')} | {ratio('pingora')} | {ratio('direct')} |")
            if "baseline" in med:
                emit(f"| {c} | switchyard vs baseline | {med['switchyard'][0] / med['baseline'][0]:.2f}x | | | "
                     f"{med['switchyard'][3] - med['baseline'][3]:+.1f} µs | | | |")
    if a.only in (None, "tenancy"):
        ensure_redis()
        rp, sc, sca, sl, sla = (free_port() for _ in range(5))
        redis_server(rp)
        key = BENCH_KEY
        tenant = tenant_config(rp)
        s4 = switchyard(sc, sca, up, extra=tenant + "\n[cache]\nenabled = true\n", key=key)
        s5 = switchyard(sl, sla, up, extra=tenant + "\n[cache]\nenabled = false\n", key=key)
        emit()
        emit("## Tenancy: limits, full chain and cache hits (upstream: nginx return 200; store: Redis)")
        emit()
        emit("limits = API key + Redis token buckets (requests and tokens), no cache; full chain = the same + a cache")
        emit("lookup that misses + the answer stored (unique temperature-0 prompts, wrk's chain.lua); cache hit = the")
        emit("same request every time; passthrough = no auth, no cache. `nginx (chain.lua)` is nginx fed the")
        emit("full chain's per-request bodies: the cost of generating them in wrk's Lua, on the same two cores.")
        emit("Redis calls/req: the gateway's own counter (`switchyard_redis_calls_total`, a script call counts once).")
        emit()
        emit("| conns | target | req/s | p50 ms | p99 ms | CPU µs/req | vs nginx | vs passthrough | Redis calls/req |")
        emit("|---|---|---|---|---|---|---|---|---|")
        for c in [int(x) for x in a.conns.split(",")]:
            rows = {}
            for name, url, pid, script, admin in (
                ("direct", f"http://127.0.0.1:{up}/v1/chat/completions", None, "chat.lua", None),
                ("nginx", f"http://127.0.0.1:{nx}/v1/chat/completions", n1.pid, "chat.lua", None),
                ("nginx (chain.lua)", f"http://127.0.0.1:{nx}/v1/chat/completions", n1.pid, "chain.lua", None),
                ("bare pingora", f"http://127.0.0.1:{by}/v1/chat/completions", b1.pid, "chat.lua", None),
                ("switchyard passthrough", f"http://127.0.0.1:{sy}/v1/chat/completions", s1.pid, "chat.lua", None),
                ("switchyard limits", f"http://127.0.0.1:{sl}/v1/chat/completions", s5.pid, "limits.lua", sla),
                ("switchyard full chain", f"http://127.0.0.1:{sc}/v1/chat/completions", s4.pid, "chain.lua", sca),
                ("switchyard cache hit", f"http://127.0.0.1:{sc}/v1/chat/completions", s4.pid, "hit.lua", sca),
            ):
                runs = []
                for _ in range(a.rounds):
                    calls0 = redis_calls(admin) if admin else 0
                    before = cpu_ticks(pid) if pid else 0
                    rps, reqs, p50, p99 = wrk(url, c, a.duration, os.path.join(ROOT, "loadtest", script), env={"KEY": key})
                    cpu_us = (cpu_ticks(pid) - before) / TICK * 1e6 / reqs if pid else None
                    calls = (redis_calls(admin) - calls0) / reqs if admin else None
                    runs.append((rps, p50, p99, cpu_us, calls))
                runs.sort(key=lambda r: r[0])
                rows[name] = runs[len(runs) // 2]
            for name, (rps, p50, p99, cpu_us, calls) in rows.items():
                vs_n = "" if name == "nginx" else f"{rps / rows['nginx'][0]:.2f}x"
                vs_p = f"{rps / rows['switchyard passthrough'][0]:.2f}x" if name.startswith("switchyard") and name != "switchyard passthrough" else ""
                rc = "" if calls is None else f"{calls:.3f}"
                cu = "" if cpu_us is None else f"{cpu_us:.1f}"
                emit(f"| {c} | {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {cu} | {vs_n} | {vs_p} | {rc} |")
        stats = commandstats(rp)
        emit()
        emit("Redis INFO commandstats after the run (script-internal commands included): "
             + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())))
    if not a.only or a.only == "stream":
        emit()
        emit("## Streamed first byte: client TTFB, sequential requests, new connection each")
        t = ttfb({"direct": mk, "nginx": nxm, "switchyard": sym})
        emit()
        emit("| target | p50 ms | p99 ms | added p50 ms |")
        emit("|---|---|---|---|")
        for name, (p50, p99) in t.items():
            emit(f"| {name} | {p50:.3f} | {p99:.3f} | {p50 - t['direct'][0]:+.3f} |")
    if a.only in (None, "dialects"):
        dialects(a, emit)
    if a.streams and a.only in (None, "memory"):
        slow, syl, syla, byl = free_port(), free_port(), free_port(), free_port()
        mock(slow, "--tokens", "100000", "--itl-ms", "1000")
        s3 = switchyard(syl, syla, slow)
        b3 = bare(byl, slow)
        emit()
        emit("## Memory per open stream (RSS, streams held open on a slow upstream)")
        emit()
        emit("| proxy | open streams | RSS before KiB | RSS with streams KiB | KiB per stream |")
        emit("|---|---|---|---|---|")
        for name, port, pid in (("switchyard", syl, s3.pid), ("bare pingora", byl, b3.pid)):
            for n, (base, held, per) in memory_per_stream(port, pid, [int(x) for x in a.streams.split(",")]).items():
                emit(f"| {name} | {n} | {base} | {held} | {per:.1f} |")
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    finally:
        cleanup()
