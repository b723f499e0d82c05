#!/usr/bin/env python3
"""A stand-in for sched-agent in the local provider's tests.

Notes how it was started (argv, SCHED_TOKEN, its pid, group and session) in
<work_dir>/fake_agent.json, starts a helper child in its own process group, and sleeps until it
is signalled. Flags of its own:
  --fake_ignore_term   SIGTERM is ignored, so only SIGKILL stops it.
  --fake_job           also starts a "job" in a process group of its own and notes it in
                       <work_dir>/pgids/ as sched-agent does ("<pgid> <start time>").
  --fake_exit_after=S  prints a last line and exits with status 3 after S seconds.
"""
import json
import os
import signal
import subprocess
import sys
import time


def flag(name):
    for arg in sys.argv[1:]:
        if arg == name:
            return ""
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    return int(stat[stat.rfind(")") + 2:].split()[19])


def main():
    work_dir = flag("--work_dir")
    os.makedirs(work_dir, exist_ok=True)
    if flag("--fake_ignore_term") is not None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "300"])
    record = {"argv": sys.argv, "token": os.environ.get("SCHED_TOKEN"),
              "token_file": os.environ.get("SCHED_TOKEN_FILE"), "pid": os.getpid(),
              "pgid": os.getpgid(0), "sid": os.getsid(0), "child_pid": child.pid,
              "job_pgid": None}
    if flag("--fake_job") is not None:
        job = subprocess.Popen(["sleep", "300"], start_new_session=True)
        os.makedirs(os.path.join(work_dir, "pgids"), exist_ok=True)
        with open(os.path.join(work_dir, "pgids", "job-1"), "w") as f:
            f.write("%d %d\n" % (job.pid, start_time(job.pid)))
        record["job_pgid"] = job.pid
    path = os.path.join(work_dir, "fake_agent.json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)
    print("fake agent up", flush=True)
    exit_after = flag("--fake_exit_after")
    deadline = time.monotonic() + float(exit_after) if exit_after else None
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.05)
    print("fake agent: cannot reach schedd, giving up", flush=True)
    child.kill()
    sys.exit(3)


if __name__ == "__main__":
    main()
