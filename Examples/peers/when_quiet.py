#!/usr/bin/env python3
"""Runs a benchmark command once the machine is quiet, and records how busy it was meanwhile.

    python Examples/peers/when_quiet.py RECORD.json -- llama-bench -m model.gguf ...

Speed figures of a shared machine mean little when another process takes a core meanwhile (a
thread that loses its core stalls every barrier of a multi-threaded step). So before starting, this
waits (up to QUIET_WAIT seconds, default 120) until less than QUIET_BUSY percent (default 10) of the
machine's CPU time in one second went to anything; then it runs the command and writes to
RECORD.json the busy share before the start and the share of the machine's CPU time that went to
*other* processes during the run (all busy time from /proc/stat minus the command's own CPU time).
compare_peers.sh marks figures measured with others_percent above 5 as disturbed. The command's
stdout and stderr pass through; the exit status is the command's.
"""
import json
import os
import resource
import subprocess
import sys
import time


def cpu_times():
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_percent(seconds=1.0):
    b1, t1 = cpu_times()
    time.sleep(seconds)
    b2, t2 = cpu_times()
    return 100.0 * (b2 - b1) / max(t2 - t1, 1)


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print("usage: when_quiet.py RECORD.json -- COMMAND [ARGS...]", file=sys.stderr)
        sys.exit(2)
    record, command = sys.argv[1], sys.argv[3:]
    limit = float(os.environ.get("QUIET_BUSY", "10"))
    wait = float(os.environ.get("QUIET_WAIT", "120"))
    start_wait = time.monotonic()
    before = busy_percent()
    while before > limit and time.monotonic() - start_wait < wait:
        before = busy_percent(2.0)
    waited = time.monotonic() - start_wait
    ticks = os.sysconf("SC_CLK_TCK")
    b1, t1 = cpu_times()
    wall1 = time.monotonic()
    status = subprocess.call(command)
    wall = time.monotonic() - wall1
    b2, t2 = cpu_times()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (usage.ru_utime + usage.ru_stime) * ticks
    others = max(0.0, (b2 - b1) - own) / max(t2 - t1, 1) * 100.0
    with open(record, "w") as f:
        json.dump({"busy_percent_before": round(before, 1), "waited_seconds": round(waited, 1),
                   "others_percent": round(others, 1), "seconds": round(wall, 1), "cpus": os.cpu_count(),
                   "command": command}, f)
    sys.exit(status)


if __name__ == "__main__":
    main()
