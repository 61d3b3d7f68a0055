#!/usr/bin/env python3
"""A profile-guided build of Switchyard: instrument, train on the benchmark workloads,
rebuild with the profile.

  loadtest/pgo.py                 # -> $CARGO_TARGET_DIR/pgo/x86_64-unknown-linux-gnu/release/switchyard
  loadtest/pgo.py --train-only    # reuse the instrumented build, retrain and rebuild

1. `cargo build --release` with `-Cprofile-generate` into `$CARGO_TARGET_DIR/pgo-gen`
   (only the target's code is instrumented: the build runs with an explicit `--target`,
   so build scripts and proc macros are not).
2. The instrumented gateway serves each workload the load tests measure, from wrk on
   loopback: chat passthrough at 1, 32 and 128 connections, SSE streams, the Anthropic
   dialect in front of an OpenAI upstream, keys with Redis limits, the all-miss chain
   and cache hits. It is stopped with SIGTERM, so it exits through its graceful
   shutdown and writes its profile.
3. `llvm-profdata merge` (the LLVM of rustc's own major version: Debian's `llvm-N`),
   then `cargo build --release` with `-Cprofile-use` into `$CARGO_TARGET_DIR/pgo`.

The upstreams (nginx, mock-llm) and Redis are the normal builds: only the gateway's own
execution is in the profile. The result is an ordinary release binary whose hot paths
are laid out and inlined by what the workloads ran; behaviour is the same source's.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402

TRIPLE = "x86_64-unknown-linux-gnu"


def llvm_profdata():
    """The llvm-profdata of rustc's LLVM major version, installed from Debian if missing."""
    v = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    major = re.search(r"LLVM version: (\d+)", v).group(1)
    tool = f"llvm-profdata-{major}"
    if not shutil.which(tool):
        subprocess.run(["apt-get", "install", "-y", "-qq", f"llvm-{major}"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return tool


def build(target_dir, rustflags):
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir, RUSTFLAGS=rustflags)
    subprocess.run(["cargo", "build", "--locked", "--release", "--target", TRIPLE, "--bin", "switchyard"],
                   cwd=R.ROOT, env=env, check=True)
    return os.path.join(target_dir, TRIPLE, "release", "switchyard")


def stop(p):
    """SIGTERM and wait: the profile is written when the process exits normally."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise SystemExit("the instrumented gateway did not stop on SIGTERM")


def lua(name):
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def train(binary, secs):
    """Every workload through the instrumented gateway; wrk fails the run on any answer
    that is not a 2xx, so the profile is of requests served."""
    up, mk = R.free_port(), R.free_port()
    R.nginx_upstream(up)
    R.mock(mk)
    key_env = {"KEY": R.BENCH_KEY}

    port, admin = R.free_port(), R.free_port()
    gw = R.switchyard(port, admin, up, binary=binary)
    chat = f"http://127.0.0.1:{port}/v1/chat/completions"
    for conns in (1, 32, 128):
        R.wrk(chat, conns, secs, lua("chat.lua"))
    stop(gw)

    port, admin = R.free_port(), R.free_port()
    gw = R.switchyard(port, admin, mk, binary=binary)
    base = f"http://127.0.0.1:{port}"
    R.wrk(f"{base}/v1/chat/completions", 32, secs, lua("stream.lua"))
    R.wrk(f"{base}/v1/messages", 32, secs, lua("messages.lua"))
    R.wrk(f"{base}/v1/messages", 32, secs, lua("messages.lua"), env={"STREAM": "1"})
    stop(gw)

    R.ensure_redis()
    rp = R.free_port()
    R.redis_server(rp)
    port, admin = R.free_port(), R.free_port()
    gw = R.switchyard(port, admin, up, extra=R.tenant_config(rp) + "\n[cache]\nenabled = true\n",
                      key=R.BENCH_KEY, binary=binary)
    chat = f"http://127.0.0.1:{port}/v1/chat/completions"
    R.wrk(chat, 32, secs, lua("limits.lua"), env=key_env)
    R.wrk(chat, 32, secs, lua("chain.lua"), env=key_env)
    R.wrk(chat, 128, secs, lua("chain.lua"), env=key_env)
    R.wrk(chat, 32, secs, lua("hit.lua"), env=key_env)
    stop(gw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-only", action="store_true", help="reuse the instrumented build")
    ap.add_argument("--secs", type=int, default=6, help="seconds per training workload")
    a = ap.parse_args()
    R.ensure_tools()
    profdata = llvm_profdata()
    raw = os.path.join(R.TARGET, "pgo-profiles")
    gen_dir, use_dir = os.path.join(R.TARGET, "pgo-gen"), os.path.join(R.TARGET, "pgo")
    shutil.rmtree(raw, ignore_errors=True)
    os.makedirs(raw)
    gen_bin = os.path.join(gen_dir, TRIPLE, "release", "switchyard")
    if not a.train_only or not os.path.exists(gen_bin):
        gen_bin = build(gen_dir, f"-Cprofile-generate={raw}")
    # The mock upstream is the normal release build (all the binaries, as run.py builds
    # them, so an up-to-date build is not rebuilt with other features).
    subprocess.run(["cargo", "build", "--locked", "--release", "--bins"], cwd=R.ROOT, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=R.TARGET))
    t = time.time()
    # Whatever directory the build baked in, the profiles go here.
    os.environ["LLVM_PROFILE_FILE"] = os.path.join(raw, "switchyard-%p-%m.profraw")
    train(gen_bin, a.secs)
    files = glob.glob(os.path.join(raw, "*.profraw"))
    if not files:
        raise SystemExit("the instrumented gateway wrote no profile")
    merged = os.path.join(R.TARGET, "switchyard.profdata")
    subprocess.run([profdata, "merge", "--sparse", "-o", merged, *files], check=True)
    print(f"trained in {time.time() - t:.0f} s: {len(files)} profiles merged into {merged}")
    out = build(use_dir, f"-Cprofile-use={merged}")
    print(out)


if __name__ == "__main__":
    try:
        main()
    finally:
        R.cleanup()
