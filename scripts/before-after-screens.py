#!/usr/bin/env python3
"""Before/after screens of issue 10 (usage: before-after-screens.py BEFORE_BIN AFTER_BIN OUT.md): both builds driven through the same keys in tmux at
80x24 against their own seeded database; each screen captured as a person sees it."""
import os
import sys
import time
import tempfile
import importlib.util

spec = importlib.util.spec_from_file_location("figs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "console-figures.py"))
figs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figs)
sh = figs.sh

CLEAR = ["C-u"] + ["BSpace"] * 70
BURST = "symbol:GBPUSD status:executed from:13:02 to:13:06"
STEPS = [
    ("orders listed (items 10-13)", [], lambda s: "executed" in s),
    ("filter `GBPUSD sell` (item 2)", ["/"] + CLEAR + ["=GBPUSD sell", "Enter"], None),
    ("filter `from:13:06 to:13:02` (item 2)", ["/"] + CLEAR + ["=from:13:06 to:13:02", "Enter"], None),
    ("filter `GBPUSD executed`, then G (items 2, 10)", ["/"] + CLEAR + ["=GBPUSD executed", "Enter", "@", "G"], None),
    (f"filter `{BURST}`, A, b: the batch preview (item 2)", ["/"] + CLEAR + ["=" + BURST, "Enter", "@", "A", "b"],
     lambda s: "Reason" in s or "reason" in s),
    ("the batch done (item 7)", ["=duplicate GBPUSD executions", "Enter", "@", "=60", "Enter"],
     lambda s: "60 rolled back" in s),
    ("esc after the batch (item 7)", ["Escape"], None),
    ("the Dashboard tab (item 7)", ["Tab", "Tab", "Tab", "Tab"], lambda s: "Dashboard" in s),
]



def drive(binary, sock, db, home, out, size=(80, 24)):
    session = f"scr{os.getpid()}"
    env = f"HOME={home} XDG_CONFIG_HOME={home} XDG_DATA_HOME={home}"
    cmd = f"env {env} {binary} --database-url '{figs.url(sock, db)}'"
    sh("tmux", "kill-session", "-t", session, check=False)
    sh("tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), f"exec {cmd}")
    try:
        figs.wait_for(session, lambda s: "executed" in s)
        for title, keys, until in STEPS:
            for k in keys:
                if k == "@":
                    time.sleep(1.0)
                elif k.startswith("="):
                    sh("tmux", "send-keys", "-t", session, "-l", k[1:])
                else:
                    sh("tmux", "send-keys", "-t", session, k)
                time.sleep(0.02 if k == "BSpace" else 0.3)
            if until:
                try:
                    figs.wait_for(session, until, timeout=20)
                except TimeoutError:
                    pass
            time.sleep(1.5)
            out.append((title, figs.capture(session)))
    finally:
        sh("tmux", "kill-session", "-t", session, check=False)


def main():
    base, new, dest = sys.argv[1], sys.argv[2], sys.argv[3]
    root = tempfile.mkdtemp(prefix="screens-")
    os.chmod(root, 0o755)
    data, sock = figs.start_server(root)
    try:
        shots = {}
        for name, binary in (("before", base), ("after", new)):
            home = tempfile.mkdtemp(prefix=f"home-{name}-")
            figs.prepare(binary, sock, f"scr_{name}", home)
            shots[name] = []
            drive(binary, sock, f"scr_{name}", home, shots[name])
        with open(dest, "w") as f:
            f.write("# Issue 10: before and after, at 80x24\n\n")
            f.write("Captured with `tmux capture-pane` from the release builds (before: 6e59dc6, the commit before\n")
            f.write("issue 10's first; after: this branch), each driven through the same keys against its own\n")
            f.write("freshly seeded sandbox book (the same seed). A filter is cleared with ctrl-u and backspaces, since the\n")
            f.write("build before had no ctrl-u. Regenerate: scripts/before-after-screens.py BEFORE_BINARY AFTER_BINARY docs/issue-10-screens.md\n\n")
            for (title, b), (_, a) in zip(shots["before"], shots["after"]):
                f.write(f"## {title}\n\nBefore:\n\n```\n{b.rstrip()}\n```\n\nAfter:\n\n```\n{a.rstrip()}\n```\n\n")
    finally:
        figs.stop_server(data)


if __name__ == "__main__":
    main()
