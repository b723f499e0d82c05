#!/usr/bin/env python3
"""schedd and one agent scraped by a real Prometheus, with deploy/prometheus/alerts.yml loaded.

Starts schedd, a sched-agent advertising one RTX 4090 at $0.50/h, sets a budget, submits a job
that runs and one that cannot be placed, and runs Prometheus (1 s scrapes) against both. Passes
when Prometheus's query API shows the expected series with the expected values, every alert rule
evaluates without error on the real series, and `promtool check metrics` finds nothing to say
about either /metrics page. Everything it starts is stopped on the way out, and dies with it if
it is killed (PR_SET_PDEATHSIG).

Needs $SCHED_BIN_DIR (the build folder: binaries in $SCHED_BIN_DIR/bin), and prometheus and
promtool on PATH (Debian package prometheus; deploy/install-deps.sh --tests).
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
NODE = "prom-node"
PROJECT = "prom"
DEADLINE_S = 45

procs = []  # (name, Popen, log path)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # Runs in the child before exec: SIGTERM when this test process dies, however it dies.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(name, argv, tmp):
    log = os.path.join(tmp, name + ".log")
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=die_with_parent)
    procs.append((name, p, log))
    return p


def stop_all():
    for _, p, _ in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for _, p, _ in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def show_logs():
    for name, _, log in procs:
        print("---- %s (%s) ----" % (name, log), file=sys.stderr)
        with open(log, errors="replace") as f:
            lines = f.readlines()
        sys.stderr.write("".join(lines[-40:]))


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_http(name, proc, url):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            fail("%s exited with code %d before serving %s" % (name, proc.returncode, url))
        try:
            http_get(url)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    fail("%s did not serve %s within 30 s" % (name, url))


def run(argv, stdin=None):
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail("%s: exit code %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r.stdout


def query(prom, promql):
    url = "http://%s/api/v1/query?%s" % (prom, urllib.parse.urlencode({"query": promql}))
    try:
        body = json.loads(http_get(url))
    except (urllib.error.URLError, ConnectionError, OSError, ValueError) as e:
        return None, str(e)
    if body.get("status") != "success":
        return None, json.dumps(body)
    return body["data"]["result"], None


def main():
    # A SIGTERM or ^C still stops what was started and shows the logs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: fail("stopped by signal %d" % signum))
    bin_root = os.environ.get("SCHED_BIN_DIR")
    if not bin_root:
        fail("SCHED_BIN_DIR is not set (the build folder, with the binaries in its bin/)")
    bindir = os.path.join(bin_root, "bin")
    schedd, agent, schedctl = (os.path.join(bindir, b) for b in ("schedd", "sched-agent",
                                                                   "schedctl"))
    for b in (schedd, agent, schedctl):
        if not os.access(b, os.X_OK):
            fail("%s is missing: build first" % b)
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            fail("%s not found: install the Debian package prometheus "
                 "(deploy/install-deps.sh --tests)" % tool)

    tmp = tempfile.mkdtemp(prefix="sched_prometheus_e2e_")
    ok = False
    try:
        ok = check(tmp, schedd, agent, schedctl)
    finally:
        stop_all()
        if not ok:
            show_logs()
            print("kept %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


def check(tmp, schedd, agent, schedctl):
    grpc = "127.0.0.1:%d" % free_port()
    schedd_metrics = "127.0.0.1:%d" % free_port()
    agent_metrics = "127.0.0.1:%d" % free_port()
    prom = "127.0.0.1:%d" % free_port()

    p = start("schedd", [schedd, "--data_dir=" + os.path.join(tmp, "schedd"), "--listen=" + grpc,
                         "--metrics_listen=" + schedd_metrics], tmp)
    wait_http("schedd", p, "http://%s/metrics" % schedd_metrics)
    p = start("sched-agent", [agent, "--server=" + grpc, "--name=" + NODE,
                              "--work_dir=" + os.path.join(tmp, "agent"),
                              "--metrics_listen=" + agent_metrics, "--gpu_detection=none",
                              "--advertise_gpus=1x NVIDIA GeForce RTX 4090:24GB",
                              "--price_per_hour=0.50"], tmp)
    wait_http("sched-agent", p, "http://%s/metrics" % agent_metrics)

    ctl = [schedctl, "--server", grpc]
    run(ctl + ["budget", "set", PROJECT, "--monthly", "100", "--alerts", "50,80"])
    job = os.path.join(tmp, "job.yaml")
    with open(job, "w") as f:
        f.write("name: hello\nproject: %s\nrun: echo hello\nresources:\n  gpus: 1\n" % PROJECT)
    run(ctl + ["submit", "-f", job])
    # Four GPUs on a one-GPU cluster: stays pending, so the project has an oldest pending job.
    big = os.path.join(tmp, "big.yaml")
    with open(big, "w") as f:
        f.write("name: too-big\nproject: %s\nrun: echo never\nresources:\n  gpus: 4\n" % PROJECT)
    run(ctl + ["submit", "-f", big])

    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write("""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: schedd
    static_configs:
      - targets: ["%s"]
  - job_name: sched-agent
    static_configs:
      - targets: ["%s"]
""" % (ALERTS, schedd_metrics, agent_metrics))
    p = start("prometheus", ["prometheus", "--config.file=" + config,
                             "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                             "--web.listen-address=" + prom, "--log.level=warn"], tmp)
    wait_http("prometheus", p, "http://%s/-/ready" % prom)

    def one(value, **labels):
        # Exactly one series, with these labels, whose value passes `value`.
        def ok(result):
            return (len(result) == 1
                    and all(result[0]["metric"].get(k) == v for k, v in labels.items())
                    and value(float(result[0]["value"][1])))
        return ok

    def eq(x):
        return lambda v: abs(v - x) < 1e-9

    def positive(v):
        return v > 0

    n = '{node="%s"}' % NODE
    expect = [
        # What schedd and the agent exported before today's additions.
        ('up{job="schedd"}', one(eq(1))),
        ('up{job="sched-agent"}', one(eq(1))),
        ('sched_job_submits_total{job="schedd"}', one(eq(2))),
        ('sched_agents_connected{job="schedd"}', one(eq(1))),
        ('sched_agent_connected{job="sched-agent"}', one(eq(1))),
        ('sched_agent_jobs_finished_total{job="sched-agent",result="succeeded"}', one(eq(1))),
        ('sched_project_budget_used_ratio{project="%s"}' % PROJECT, one(lambda v: v >= 0)),
        # The series alerts.yml reads.
        ('sched_node_up' + n, one(eq(1), provider="local")),
        ('sched_node_price_dollars_per_hour' + n, one(eq(0.5), provider="local")),
        ('sched_project_budget_threshold_ratio{project="%s",threshold="50"}' % PROJECT,
         one(eq(0.5))),
        ('sched_project_budget_threshold_ratio{project="%s",threshold="80"}' % PROJECT,
         one(eq(0.8))),
        ('count(sched_project_budget_threshold_ratio{project="%s"})' % PROJECT, one(eq(2))),
        ('sched_project_budget_hard_cap{project="%s"}' % PROJECT, one(eq(1))),
        ('sched_pending_jobs_oldest_age_seconds{project="%s"}' % PROJECT, one(positive)),
        # Both results there from the start, at 0: increase() sees the first failure only if
        # the series existed before it.
        ('sched_checkpoint_uploads_total{result="ok"}', one(eq(0))),
        ('sched_checkpoint_uploads_total{result="failed"}', one(eq(0))),
        ('sched_store_disk_free_bytes', one(positive)),
        ('sched_store_disk_size_bytes', one(positive)),
        ('sched_store_disk_free_bytes <= sched_store_disk_size_bytes', one(positive)),
        ('sched_provider_spend_dollars{provider="local"}', one(lambda v: v >= 0)),
    ]
    problems = []  # each phase adds what it found; all are reported together
    pending = list(expect)
    last = {}
    end = time.monotonic() + DEADLINE_S
    while pending and time.monotonic() < end:
        for _, p, _ in procs:
            if p.poll() is not None:
                fail("%s exited with code %d" % (procs_name(p), p.returncode))
        still = []
        for promql, ok in pending:
            result, err = query(prom, promql)
            last[promql] = err if result is None else json.dumps(result)
            if result is None or not ok(result):
                still.append((promql, ok))
        pending = still
        if pending:
            time.sleep(0.5)
    if pending:
        problems.append("after %d s, %d of %d queries still answer otherwise:\n%s" % (
            DEADLINE_S, len(pending), len(expect), "\n".join(
                "  %s\n      %s" % (q, last.get(q)) for q, _ in pending)))
    else:
        print("ok: %d queries" % len(expect))

    # Every rule of alerts.yml evaluated on the real series without error (a many-to-many
    # match, for one, only shows up here).
    end = time.monotonic() + 15
    while True:
        rules = json.loads(http_get("http://%s/api/v1/rules" % prom))["data"]["groups"]
        all_rules = [r for g in rules for r in g["rules"]]
        evaluated = [r for r in all_rules if r.get("health") != "unknown"]
        bad = [r for r in all_rules if r.get("health") == "err"]
        if bad:
            problems.append("rules failing in Prometheus:\n" + "\n".join(
                "  %s: %s" % (r["name"], r.get("lastError")) for r in bad))
            break
        if all_rules and len(evaluated) == len(all_rules):
            print("ok: %d rules evaluated without error" % len(all_rules))
            break
        if time.monotonic() > end:
            problems.append("rules not all evaluated within 15 s: %d of %d" % (
                len(evaluated), len(all_rules)))
            break
        time.sleep(0.5)
    firing = [a for a in json.loads(http_get("http://%s/api/v1/alerts" % prom))["data"]["alerts"]
              if a["state"] == "firing"]
    if firing:
        problems.append("alerts firing on a healthy cluster: %s" % json.dumps(firing))

    # promtool's lint of the exposition format and names.
    for name, addr in (("schedd", schedd_metrics), ("sched-agent", agent_metrics)):
        page = http_get("http://%s/metrics" % addr)
        with open(os.path.join(tmp, name + ".metrics"), "wb") as f:
            f.write(page)
        r = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True,
                           timeout=30)
        said = (r.stdout + r.stderr).decode(errors="replace").strip()
        if r.returncode != 0 or said:
            problems.append("promtool check metrics on %s's /metrics (exit code %d):\n%s" % (
                name, r.returncode, said))
        else:
            print("ok: promtool check metrics has nothing to say about %s" % name)
    if problems:
        fail("\n".join(problems))
    return True


def procs_name(proc):
    return next(name for name, p, _ in procs if p is proc)


if __name__ == "__main__":
    main()
