#!/usr/bin/env python3
"""Submits trivial batch jobs to slurmrestd over its unix socket from several threads at once
for a fixed time, and prints one line of key=value figures like sched-bench does.

    slurm_rest_submit.py SOCKET [--seconds 5] [--threads 16]
"""
import argparse
import http.client
import json
import socket
import threading
import time

BODY = json.dumps({
    "job": {
        "name": "rest",
        "current_working_directory": "/tmp",
        "environment": {"PATH": "/bin:/usr/bin"},
        "standard_output": "/dev/null",
    },
    "script": "#!/bin/sh\ntrue\n",
})


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p * (len(values) - 1) + 0.5))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    latencies_ms = []
    failures = []

    def worker():
        while time.monotonic() < deadline:
            # A new connection per request keeps this simple; over a unix socket it costs little.
            conn = UnixConnection(args.socket)
            start = time.monotonic()
            try:
                conn.request("POST", "/slurm/v0.0.38/job/submit", BODY,
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                reply = resp.read()
                ok = resp.status == 200 and json.loads(reply).get("job_id")
            except (OSError, http.client.HTTPException, ValueError) as e:
                ok, reply = False, str(e).encode()
            finally:
                conn.close()
            elapsed = (time.monotonic() - start) * 1000
            with lock:
                if ok:
                    latencies_ms.append(elapsed)
                else:
                    failures.append(reply[:200])

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    print("mode=rest ok=%d failed=%d seconds=%.2f jobs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
          "threads=%d" % (len(latencies_ms), len(failures), seconds, len(latencies_ms) / seconds,
                          percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99),
                          args.threads))
    if failures:
        print("first failure: %r" % failures[0], flush=True)


if __name__ == "__main__":
    main()
