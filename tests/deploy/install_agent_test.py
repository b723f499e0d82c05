#!/usr/bin/env python3
"""deploy/install-agent.sh, the agent's start script for rented machines.

Dry runs, in a clean environment each:
  - RunPod (RUNPOD_POD_ID): no --provider (the agent finds RunPod itself, which its own
    --detect_only confirms), --name=runpod-<pod id>, price, spot, pin; the token masked;
  - Vast.ai (VAST_CONTAINERLABEL, CONTAINER_ID) under --supervise: the token as a file;
  - AWS and GCP against fake metadata servers (IMDSv2 with its session token; GCE's
    Metadata-Flavor header): --provider, --region, --instance_type, --spot=true, the instance's
    name;
  - none of them (both metadata servers a closed port): no provider flag;
  - no agent anywhere and SCHED_BUNDLE_URL set: it says it would download.
The token's secret is in no output.

Then for real, against schedds started here:
  - foreground, the agent downloaded from a bundle made from the build (file:// URL): the node
    turns READY in `schedctl get nodes`; SIGTERM to the script's pid (the agent, exec'd) ends it;
  - --supervise over TLS with a pin and a join token: the script starts itself again without the
    token in its environment (/proc/PID/environ) and hands it on in a 0600 file; the node turns
    READY; the agent killed with SIGKILL is started again, joins on its node certificate, and the
    token file is gone; SIGTERM to the script is passed on and both exit.

Usage: install_agent_test.py SOURCE_DIR, with $SCHED_BIN_DIR the build folder.
"""

import http.server
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

SECRET_PART = "c0ffee0ddba11f00dfeedfacecafebeef0123456789abcdef0123456789abcd"
FAKE_TOKEN = "00000000deadbeef." + SECRET_PART

procs = []  # (name, Popen, log path)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    for name, _, log in procs:
        print("---- %s (%s) ----" % (name, log), file=sys.stderr)
        with open(log, errors="replace") as f:
            sys.stderr.write("".join(f.readlines()[-30:]))
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_url():
    return "http://127.0.0.1:%d" % free_port()


class Source:
    def __init__(self, src, build, tmp):
        self.script = os.path.join(src, "deploy", "install-agent.sh")
        self.bundler = os.path.join(src, "deploy", "bundle", "make-agent-bundle.sh")
        self.bin = os.path.join(build, "bin")
        self.agent = os.path.join(self.bin, "sched-agent")
        self.tmp = tmp


def base_env(tmp, **extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "LANG": "C.UTF-8",
           # No real metadata server is asked, whatever machine the test runs on.
           "SCHED_AWS_METADATA_URL": closed_url(), "SCHED_GCP_METADATA_URL": closed_url(),
           "SCHED_METADATA_TIMEOUT": "1"}
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def dry_run(s, env, *args):
    r = subprocess.run(["bash", s.script, "--dry-run", *args], env=env, capture_output=True,
                       text=True, timeout=60)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        fail("install-agent.sh --dry-run %s: exit %d\n%s" % (" ".join(args), r.returncode, out))
    if SECRET_PART in out:
        fail("the token was printed:\n" + out)
    m = re.search(r"^command: (.*)$", r.stdout, re.M)
    if not m:
        fail("no command line in the dry run's output:\n" + out)
    return m.group(1), out


def expect(what, command, present=(), absent=()):
    for p in present:
        if p not in command:
            fail("%s: %r not in the command line:\n%s" % (what, p, command))
    for a in absent:
        if a in command:
            fail("%s: %r should not be in the command line:\n%s" % (what, a, command))
    print("ok: " + what)


class FakeMetadata(http.server.ThreadingHTTPServer):
    """An EC2 (IMDSv2) or GCE metadata server answering a few paths."""

    def __init__(self, kind, answers):
        self.kind = kind
        self.answers = answers
        self.unauthorized = 0
        super().__init__(("127.0.0.1", 0), FakeMetadataHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class FakeMetadataHandler(http.server.BaseHTTPRequestHandler):
    AWS_TOKEN = "imds-session-token"

    def log_message(self, *_):
        pass

    def reply(self, code, body=""):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if (self.server.kind == "aws" and self.path == "/latest/api/token"
                and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")):
            return self.reply(200, self.AWS_TOKEN)
        self.reply(404)

    def do_GET(self):
        if self.server.kind == "aws":
            if self.headers.get("X-aws-ec2-metadata-token") != self.AWS_TOKEN:
                self.server.unauthorized += 1
                return self.reply(401)
            prefix = "/latest/meta-data/"
        else:
            if self.headers.get("Metadata-Flavor") != "Google":
                self.server.unauthorized += 1
                return self.reply(403)
            prefix = "/computeMetadata/v1/instance/"
        key = self.path[len(prefix):] if self.path.startswith(prefix) else None
        if key in self.server.answers:
            return self.reply(200, self.server.answers[key])
        self.reply(404)


def check_dry_runs(s):
    common = dict(SCHED_SERVER="sched.example.com:7070", SCHED_TOKEN=FAKE_TOKEN,
                  SCHED_CA_PIN="sha256:" + "ab" * 32, SCHED_AGENT=s.agent,
                  SCHED_WORK_DIR=os.path.join(s.tmp, "dry-work"))
    pin = "--ca_pin=sha256:" + "ab" * 32

    env = base_env(s.tmp, RUNPOD_POD_ID="p0d1d2", SCHED_PRICE_PER_HOUR="0.44", SCHED_SPOT="true",
                   **common)
    command, out = dry_run(s, env, "--", "--labels=pool=rented")
    expect("RunPod", command,
           present=["SCHED_TOKEN=****", "--server=sched.example.com:7070", pin,
                    "--name=runpod-p0d1d2", "--price_per_hour=0.44", "--spot=true",
                    "--labels=pool=rented", s.agent],
           absent=["--provider"])
    if "provider: runpod" not in out:
        fail("RunPod not reported:\n" + out)
    # ... because the agent finds it by itself:
    detect = subprocess.run([s.agent, "--detect_only", "--gpu_detection=none",
                             "--work_dir=" + s.tmp], env=env, capture_output=True, text=True)
    if '"provider": "runpod"' not in detect.stdout:
        fail("sched-agent does not find RunPod by itself:\n" + detect.stdout + detect.stderr)

    env = base_env(s.tmp, VAST_CONTAINERLABEL="C.4242", CONTAINER_ID="4242",
                   SCHED_PRICE_PER_HOUR="0.31", **common)
    command, out = dry_run(s, env, "--supervise")
    expect("Vast.ai, supervised", command,
           present=["SCHED_TOKEN_FILE=" + os.path.join(s.tmp, "dry-work", "join.token"),
                    "--name=vast-4242", "--price_per_hour=0.31"],
           absent=["--provider", "--spot", "SCHED_TOKEN="])
    if "supervised" not in out:
        fail("--supervise not reported:\n" + out)

    aws = FakeMetadata("aws", {"instance-id": "i-0123456789abcdef0",
                               "placement/region": "us-east-1",
                               "instance-type": "g5.xlarge", "instance-life-cycle": "spot"})
    env = base_env(s.tmp, SCHED_PRICE_PER_HOUR="0.52", **common)
    env["SCHED_AWS_METADATA_URL"] = aws.url
    command, _ = dry_run(s, env)
    expect("AWS spot, from IMDSv2", command,
           present=["--provider=aws", "--region=us-east-1", "--instance_type=g5.xlarge",
                    "--spot=true", "--name=i-0123456789abcdef0",
                    "--aws_metadata_url=" + aws.url])
    aws.shutdown()

    gcp = FakeMetadata("gcp", {"name": "gpu-box-7", "zone": "projects/42/zones/us-central1-a",
                               "machine-type": "projects/42/machineTypes/g2-standard-8",
                               "scheduling/provisioning-model": "SPOT",
                               "scheduling/preemptible": "FALSE"})
    env = base_env(s.tmp, **common)
    env["SCHED_GCP_METADATA_URL"] = gcp.url
    command, out = dry_run(s, env)
    expect("GCP spot, from the metadata server", command,
           present=["--provider=gcp", "--region=us-central1", "--instance_type=g2-standard-8",
                    "--spot=true", "--name=gpu-box-7", "--gcp_metadata_url=" + gcp.url])
    if "SCHED_PRICE_PER_HOUR is not set" not in out:
        fail("no warning about the missing price:\n" + out)
    gcp.shutdown()

    env = base_env(s.tmp, **common)
    command, out = dry_run(s, env)
    expect("no provider found", command, absent=["--provider", "--spot", "--name="])
    if "provider: local" not in out:
        fail("expected provider local:\n" + out)

    env = base_env(s.tmp, SCHED_BUNDLE_URL="https://downloads.example.com/b.tar.gz",
                   SCHED_PREFIX=os.path.join(s.tmp, "nowhere"), **common)
    del env["SCHED_AGENT"]
    command, out = dry_run(s, env)
    if "would download https://downloads.example.com/b.tar.gz" not in out:
        fail("no download announced:\n" + out)
    expect("bundle to download", command,
           present=[os.path.join(s.tmp, "nowhere", "bin", "sched-agent")])


def start(name, argv, env, tmp):
    log = os.path.join(tmp, name + ".log")
    with open(log, "wb") as f:
        p = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    procs.append((name, p, log))
    return p


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def start_schedd(s, name, *flags):
    port = free_port()
    data = os.path.join(s.tmp, name)
    p = start(name, [os.path.join(s.bin, "schedd"), "--data_dir=" + data,
                     "--listen=127.0.0.1:%d" % port, "--metrics_listen=", *flags],
              base_env(s.tmp), s.tmp)
    log = procs[-1][2]
    end = time.monotonic() + 30
    while "serving gRPC" not in read(log):
        if p.poll() is not None or time.monotonic() > end:
            fail("%s did not start" % name)
        time.sleep(0.1)
    return "127.0.0.1:%d" % port, data, log


def node_state(s, ctl_args, node):
    r = subprocess.run([os.path.join(s.bin, "schedctl"), *ctl_args, "get", "nodes"],
                       capture_output=True, text=True, timeout=20, env=base_env(s.tmp))
    for line in r.stdout.splitlines():
        cols = line.split()
        if cols and cols[0] == node:
            return cols[1]
    return None


def wait_ready(s, ctl_args, node, watched, after=None):
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if watched.poll() is not None:
            fail("the agent's script exited (%d) before %s was READY" % (watched.returncode, node))
        if node_state(s, ctl_args, node) == "READY" and (after is None or after()):
            return
        time.sleep(0.3)
    fail("%s not READY within 60 s (state %s)" % (node, node_state(s, ctl_args, node)))


def wait_exit(p, what, timeout=30):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("%s did not exit within %d s of SIGTERM" % (what, timeout))


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def check_foreground(s):
    server, _, _ = start_schedd(s, "schedd-plain")
    bundle = os.path.join(s.tmp, "bundle.tar.gz")
    r = subprocess.run([s.bundler, os.path.dirname(s.bin), bundle], capture_output=True,
                       text=True)
    if r.returncode != 0:
        fail("make-agent-bundle.sh: " + r.stdout + r.stderr)
    prefix = os.path.join(s.tmp, "prefix")
    env = base_env(s.tmp, SCHED_SERVER=server, SCHED_BUNDLE_URL="file://" + bundle,
                   SCHED_PREFIX=prefix, SCHED_WORK_DIR=os.path.join(s.tmp, "work-fg"),
                   SCHED_NODE_NAME="install-fg", SCHED_PRICE_PER_HOUR="0.25")
    p = start("install-agent-fg", ["bash", s.script, "--", "--metrics_listen=",
                                   "--gpu_detection=none"], env, s.tmp)
    wait_ready(s, ["--server", server], "install-fg", p)
    exe = os.readlink("/proc/%d/exe" % p.pid)
    if not exe.startswith(os.path.join(prefix, "bundle")):
        fail("the script's pid runs %s, not the downloaded bundle's agent" % exe)
    print("ok: foreground: the bundle's agent (%s) joined, READY" % exe)
    p.send_signal(signal.SIGTERM)
    rc = wait_exit(p, "the agent")
    if rc != 0:
        fail("the agent exited %d after SIGTERM" % rc)
    print("ok: foreground: SIGTERM stopped the agent (exit 0)")


def check_supervised_tls(s):
    server, data, log = start_schedd(s, "schedd-tls", "--tls=on", "--require_tokens")
    pin = re.search(r"pin (sha256:[0-9a-f]{64})", read(log)).group(1)
    ctl = ["--server", server, "--ca_pin", pin, "--token_file", os.path.join(data, "admin.token")]
    r = subprocess.run([os.path.join(s.bin, "schedctl"), *ctl, "token", "create", "--role",
                        "agent", "--uses", "1", "--ttl", "1h", "--description", "install test"],
                       capture_output=True, text=True, timeout=20, env=base_env(s.tmp))
    if r.returncode != 0:
        fail("token create: " + r.stdout + r.stderr)
    token = r.stdout.splitlines()[0].strip()
    secret = token.split(".", 1)[1]
    work = os.path.join(s.tmp, "work-sup")
    token_file = os.path.join(work, "join.token")
    env = base_env(s.tmp, SCHED_SERVER=server, SCHED_CA_PIN=pin, SCHED_TOKEN=token,
                   SCHED_AGENT=s.agent, SCHED_WORK_DIR=work, SCHED_NODE_NAME="install-sup",
                   SCHED_PRICE_PER_HOUR="0.30")
    p = start("install-agent-sup", ["bash", s.script, "--supervise", "--",
                                    "--metrics_listen=", "--gpu_detection=none"], env, s.tmp)
    wait_ready(s, ctl, "install-sup", p)
    with open("/proc/%d/environ" % p.pid, "rb") as f:
        environ = f.read()
    if secret.encode() in environ or b"SCHED_TOKEN=" in environ:
        fail("the supervising script still has the token in its environment")
    if stat.S_IMODE(os.stat(token_file).st_mode) != 0o600:
        fail("%s is not 0600" % token_file)
    agents = children(p.pid)
    if len(agents) != 1:
        fail("expected one agent under the script, found %s" % agents)
    print("ok: supervised: joined over TLS; the token only in %s (0600)" % token_file)

    # A crash: started again, on its node certificate, and the spent token's file removed.
    os.kill(agents[0], signal.SIGKILL)
    wait_ready(s, ctl, "install-sup", p,
               after=lambda: children(p.pid) not in ([], agents) and
               not os.path.exists(token_file))
    print("ok: supervised: the killed agent was started again (pid %s), the token file removed"
          % children(p.pid))
    again = children(p.pid)
    p.send_signal(signal.SIGTERM)
    rc = wait_exit(p, "the supervising script")
    for pid in again:
        if os.path.exists("/proc/%d" % pid) and "Z" not in read("/proc/%d/stat" % pid).split()[2]:
            fail("the agent %d still runs after the script exited" % pid)
    if rc != 0:
        fail("the supervising script exited %d after SIGTERM" % rc)
    if "passed on to the agent" not in read(procs[-1][2]):
        fail("the script does not say it passed SIGTERM on")
    for _, _, path in procs:
        if secret in read(path):
            fail("the token's secret is in %s" % path)
    print("ok: supervised: SIGTERM passed on; both exited (0); the secret in no log")


def main():
    if len(sys.argv) != 2:
        print("usage: install_agent_test.py SOURCE_DIR", file=sys.stderr)
        return 2
    build = os.environ.get("SCHED_BIN_DIR")
    if not build:
        print("FAIL: SCHED_BIN_DIR is not set (the build folder)", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="sched_install_agent_test_")
    s = Source(sys.argv[1], build, tmp)
    ok = False
    try:
        check_dry_runs(s)
        check_foreground(s)
        check_supervised_tls(s)
        ok = True
    finally:
        for _, p, _ in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept " + tmp, file=sys.stderr)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
