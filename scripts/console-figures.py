#!/usr/bin/env python3
"""How the console feels to a person, measured the way a person sees it: the real binary in
tmux, the screen polled with capture-pane. Two builds (a baseline and a candidate) run in
turn, round after round, against the same PostgreSQL, so the ratios hold on a shared, noisy
machine.

    scripts/console-figures.py BASE_BINARY NEW_BINARY [--rounds 5] [--size 160x48] [--startup-only]

Per build and round: launch -> first frame, launch -> first orders listed, RSS after
paging 20 pages, idle CPU over 10 s, key latency (j, median of 20, until the cursor
moves; the cursor's line, for builds without a counter). One uncounted warm-up run per build first. Prints each round, the medians and the
new/base ratios. The screen is polled every millisecond through `tmux capture-pane`, whose
own cost (a few ms) is in every figure alike.

Needs tmux, and PostgreSQL 15 server binaries on PATH (initdb, pg_ctl); run as root (the
server runs as the `postgres` user) or as a normal user. Each build migrates and seeds its
own database with its own `migrate` and `seed`, so builds of different schema versions
compare fairly.
"""

import argparse
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PORT = 54329


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def as_postgres(args):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + args
    return args


def start_server(root):
    data, sock = os.path.join(root, "pg"), os.path.join(root, "sock")
    os.makedirs(sock)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
    sh(*as_postgres(["initdb", "-D", data, "-U", "postgres", "--auth=trust"]))
    opts = f"-k {sock} -p {PORT} -c listen_addresses='' -c fsync=off"
    sh(*as_postgres(["pg_ctl", "-D", data, "-o", opts, "-w", "-l", os.path.join(root, "pg.log"), "start"]))
    return data, sock


def stop_server(data):
    sh(*as_postgres(["pg_ctl", "-D", data, "-m", "immediate", "stop"]), check=False)


def url(sock, db):
    return f"postgres://postgres@localhost/{db}?host={sock}&port={PORT}"


def prepare(binary, sock, db, home):
    sh("psql", "-h", sock, "-p", str(PORT), "-U", "postgres", "-c", f"CREATE DATABASE {db}")
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home)
    for cmd in (["migrate"], ["seed"]):
        r = sh(binary, "--database-url", url(sock, db), *cmd, env=env, check=False)
        if r.returncode != 0:
            sys.exit(f"{binary} {cmd}: {r.stdout}{r.stderr}")


def capture(session):
    return sh("tmux", "capture-pane", "-p", "-t", session, check=False).stdout


def wait_for(session, pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        screen = capture(session)
        if pred(screen):
            return time.monotonic(), screen
        time.sleep(0.001)
    raise TimeoutError(f"screen never matched:\n{capture(session)}")


ROW = re.compile(r"row (\d+) of")


def row_of(screen):
    m = ROW.search(screen)
    return int(m.group(1)) if m else None


def cursor_at(screen):
    """The cursor's line and the row counter: what j changes."""
    lines = screen.splitlines()
    line = next((i for i, l in enumerate(lines) if l.startswith(("┃▶", "│▶"))), None)
    return (line, row_of(screen), lines[line] if line is not None else None)


def pid_of(session):
    return int(sh("tmux", "display", "-p", "-t", session, "#{pane_pid}").stdout.strip())


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_run(binary, sock, db, home, size, startup_only=False, sandbox=None):
    session = f"figs{os.getpid()}"
    w, h = size
    # A fresh home each run: a run must not resume the incident the last one opened.
    home = tempfile.mkdtemp(prefix="run-", dir=home)
    env = f"HOME={home} XDG_CONFIG_HOME={home} XDG_DATA_HOME={home}"
    if sandbox:
        cmd = f"env {env} INCIDENT_CONSOLE_SANDBOX_DIR={sandbox} {binary}"
    else:
        cmd = f"env {env} {binary} --database-url '{url(sock, db)}'"
    sh("tmux", "kill-session", "-t", session, check=False)
    launched = time.monotonic()
    sh("tmux", "new-session", "-d", "-s", session, "-x", str(w), "-y", str(h), f"exec {cmd}")
    try:
        first, _ = wait_for(session, lambda s: "Orders" in s)
        # A row under the cursor: the first page is on screen ("executed" alone is also in
        # the filter line's example, drawn in the first frame).
        listed, _ = wait_for(session, lambda s: cursor_at(s)[0] is not None)
        if startup_only:
            sh("tmux", "send-keys", "-t", session, "q")
            return {"first_frame_ms": (first - launched) * 1000, "orders_listed_ms": (listed - launched) * 1000}
        pid = pid_of(session)
        time.sleep(1.0)
        # Key latency: j moves the cursor; the cursor's line (and the row counter, where a
        # build has one) says so. Builds without a row counter are compared by the line.
        latencies = []
        for _ in range(20):
            before = cursor_at(capture(session))
            sent = time.monotonic()
            sh("tmux", "send-keys", "-t", session, "j")
            seen, _ = wait_for(session, lambda s: cursor_at(s) != before)
            latencies.append(seen - sent)
            time.sleep(0.05)
        for _ in range(20):
            sh("tmux", "send-keys", "-t", session, "PgDn")
            time.sleep(0.05)
        time.sleep(1.0)
        rss = rss_kb(pid)
        t0, c0 = time.monotonic(), cpu_ticks(pid)
        time.sleep(10.0)
        t1, c1 = time.monotonic(), cpu_ticks(pid)
        idle = (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0) * 100.0
        sh("tmux", "send-keys", "-t", session, "q")
        return {
            "first_frame_ms": (first - launched) * 1000,
            "orders_listed_ms": (listed - launched) * 1000,
            "key_ms": statistics.median(latencies) * 1000,
            "rss_mb": rss / 1024,
            "idle_cpu_pct": idle,
        }
    finally:
        time.sleep(0.3)
        sh("tmux", "kill-session", "-t", session, check=False)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", default="160x48")
    p.add_argument("--startup-only", action="store_true", help="only launch -> first frame and -> orders listed")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="each build on its own sandbox (started once before the rounds, stopped after) instead of a URL",
    )
    a = p.parse_args()
    size = tuple(int(x) for x in a.size.split("x"))
    builds = {"base": os.path.abspath(a.base), "new": os.path.abspath(a.new)}
    root = tempfile.mkdtemp(prefix="console-figures-")
    os.chmod(root, 0o755)
    data, sock = start_server(root)
    homes, sandboxes = {}, {}
    try:
        for name, binary in builds.items():
            homes[name] = tempfile.mkdtemp(prefix=f"home-{name}-")
            os.chmod(homes[name], 0o755)
            if a.sandbox:
                sandboxes[name] = os.path.join(root, f"sandbox-{name}")
                env = dict(os.environ, HOME=homes[name], INCIDENT_CONSOLE_SANDBOX_DIR=sandboxes[name])
                r = sh(binary, "sandbox", "start", env=env, check=False)
                if r.returncode != 0:
                    sys.exit(f"{binary} sandbox start: {r.stdout}{r.stderr}")
            else:
                prepare(binary, sock, f"figs_{name}", homes[name])
        # One run each first, not counted: the first launch pays for cold caches.
        for name, binary in builds.items():
            one_run(binary, sock, f"figs_{name}", homes[name], size, a.startup_only, sandboxes.get(name))
        results = {name: [] for name in builds}
        for r in range(a.rounds):
            for name, binary in builds.items():
                f = one_run(binary, sock, f"figs_{name}", homes[name], size, a.startup_only, sandboxes.get(name))
                results[name].append(f)
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in f.items()), flush=True)
        print(f"\nmedians over {a.rounds} rounds at {a.size}:")
        keys = list(results["base"][0].keys())
        med = {n: {k: statistics.median(x[k] for x in results[n]) for k in keys} for n in builds}
        for k in keys:
            b, n = med["base"][k], med["new"][k]
            ratio = n / b if b else float("nan")
            print(f"  {k:<18} base {b:8.2f}   new {n:8.2f}   new/base {ratio:.2f}")
    finally:
        for name, dir in sandboxes.items():
            env = dict(os.environ, HOME=homes[name], INCIDENT_CONSOLE_SANDBOX_DIR=dir)
            sh(builds[name], "sandbox", "stop", env=env, check=False)
        stop_server(data)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
