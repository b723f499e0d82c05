#!/usr/bin/env python3
"""The Python client (client/python/) against the real binaries: stubs generated from proto/ by
generate.sh into a temporary folder, a schedd and one sched-agent as processes, then
sched_client.py run as a user runs it. A second schedd requires tokens and serves TLS.

Needs $SCHED_BIN_DIR (the build folder: bin/schedd, bin/sched-agent), protoc with
grpc_python_plugin, and a python3 that imports grpc and google.protobuf (Debian's
python3-grpcio and python3-protobuf: /usr/bin/python3 when python3 on PATH is another one).
$SCHED_PYTHON names the interpreter to run the client with.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLIENT_DIR = os.path.join(ROOT, "client", "python")
CLIENT = os.path.join(CLIENT_DIR, "sched_client.py")
NODE = "py-node"


def client_python():
    """An interpreter with grpc and protobuf: $SCHED_PYTHON, this one, or Debian's."""
    if os.environ.get("SCHED_PYTHON"):
        return os.environ["SCHED_PYTHON"]
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = [candidate, "-c", "import grpc, google.protobuf"]
        if os.path.exists(candidate) and subprocess.run(probe, capture_output=True).returncode == 0:
            return candidate
    raise AssertionError(
        "no python3 here imports grpc and google.protobuf: install python3-grpcio and "
        "python3-protobuf (deploy/install-deps.sh --tests), or set SCHED_PYTHON")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name):
    bin_dir = os.environ.get("SCHED_BIN_DIR")
    if not bin_dir:
        raise AssertionError("SCHED_BIN_DIR is not set (the build folder holding bin/)")
    path = os.path.join(bin_dir, "bin", name)
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is not an executable" % path)
    return path


class Processes:
    """The processes a test started; stop() ends each (SIGTERM, then SIGKILL) and waits."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.procs = []

    def start(self, name, argv):
        log = open(os.path.join(self.log_dir, name + ".log"), "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, only=None):
        for name, proc in reversed(self.procs):
            if (only is None or proc is only) and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = [(n, p) for n, p in self.procs if p.poll() is None]

    def check_running(self):
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError("%s exited with %d:\n%s" % (name, proc.returncode,
                                                                self.log(name)))

    def log(self, name):
        try:
            with open(os.path.join(self.log_dir, name + ".log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.python = client_python()
        cls.tmp = tempfile.mkdtemp(prefix="python_client_test.")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.stubs = os.path.join(cls.tmp, "stubs")
        subprocess.run(["sh", os.path.join(CLIENT_DIR, "generate.sh"), cls.stubs], check=True,
                       timeout=60)
        cls.procs = Processes(cls.tmp)
        cls.addClassCleanup(cls.procs.stop)
        cls.address = "127.0.0.1:%d" % free_port()
        cls.procs.start("schedd", [binary("schedd"), "--data_dir=" + os.path.join(cls.tmp, "data"),
                                   "--listen=" + cls.address, "--metrics_listen="])
        cls.procs.start("agent", [binary("sched-agent"), "--server=" + cls.address,
                                  "--name=" + NODE, "--work_dir=" + os.path.join(cls.tmp, "agent"),
                                  "--metrics_listen=", "--gpu_detection=none"])
        cls.wait_for_node()

    @classmethod
    def client(cls, *args, stdin=None, server=None, timeout=60):
        env = dict(os.environ, SCHED_PYTHON_STUBS=cls.stubs, PYTHONDONTWRITEBYTECODE="1")
        for name in ("SCHED_SERVER", "SCHED_TOKEN", "SCHED_TOKEN_FILE", "SCHED_CA_FILE"):
            env.pop(name, None)
        return subprocess.run([cls.python, CLIENT, "--server", server or cls.address, *args],
                              input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout)

    @classmethod
    def wait_for_node(cls):
        deadline = time.monotonic() + 30
        while True:
            cls.procs.check_running()
            out = cls.client("--timeout", "2", "nodes")
            if out.returncode == 0 and re.search(r"^%s READY$" % NODE, out.stdout, re.M):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    "node %s not READY within 30 s; last: %r %r\nschedd:\n%s\nagent:\n%s" % (
                        NODE, out.stdout, out.stderr, cls.procs.log("schedd"),
                        cls.procs.log("agent")))
            time.sleep(0.3)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertExit(self, result, code):
        self.assertEqual(result.returncode, code,
                         "exit %d, stdout:\n%s\nstderr:\n%s" % (result.returncode, result.stdout,
                                                                result.stderr))

    def test_run_prints_the_output_of_a_job_that_succeeds(self):
        marker = "marker-" + uuid.uuid4().hex
        spec = self.write("ok.yaml", "\n".join([
            "name: py-ok",
            "project: pyproj",
            "setup: test -n \"$MARKER\"",
            "run: echo \"got $MARKER\"",
            "env:",
            "  MARKER: " + marker,
            "resources:",
            "  cpus: 0.5",
            "  memory: 64MiB",
            "labels:",
            "  origin: python",
            ""]))
        result = self.client("run", spec)
        self.assertExit(result, 0)
        self.assertIn("got " + marker, result.stdout)
        self.assertRegex(result.stderr, r"job/[0-9a-f]{16} SUCCEEDED on %s, exit code 0" % NODE)
        job_id = re.search(r"job/([0-9a-f]{16}) submitted", result.stderr).group(1)

        logs = self.client("logs", job_id[:8])
        self.assertExit(logs, 0)
        self.assertEqual(logs.stdout, "got %s\n" % marker)
        watch = self.client("watch", job_id)
        self.assertExit(watch, 0)
        self.assertEqual(watch.stdout.strip().splitlines()[-1],
                         "job/%s SUCCEEDED on %s, exit code 0" % (job_id, NODE))

    def test_run_of_a_job_that_fails_exits_non_zero_and_says_failed(self):
        spec = json.dumps({"name": "py-fail", "run": "echo before-exit; exit 3"})
        result = self.client("run", "-", stdin=spec)
        self.assertExit(result, 1)
        self.assertRegex(result.stderr, r"job/[0-9a-f]{16} FAILED on %s, exit code 3" % NODE)
        self.assertIn("before-exit", result.stdout)

    def test_submit_of_an_invalid_spec_shows_invalid_argument(self):
        spec = self.write("bad.json", json.dumps({"name": "bad name!", "run": "true"}))
        result = self.client("submit", spec)
        self.assertExit(result, 3)
        self.assertIn("SubmitJob: INVALID_ARGUMENT: name: must be", result.stderr)
        self.assertEqual(result.stdout, "")

    def test_a_job_file_this_client_cannot_map_sends_nothing(self):
        spec = json.dumps({"run": "true", "resources": {"disk": "1GB"}})
        result = self.client("submit", "-", stdin=spec)
        self.assertExit(result, 2)
        self.assertIn("resources.disk: unknown key", result.stderr)

    def test_token_and_ca_against_a_schedd_that_requires_tokens(self):
        data = os.path.join(self.tmp, "secure")
        address = "127.0.0.1:%d" % free_port()
        schedd = self.procs.start("schedd-secure", [
            binary("schedd"), "--data_dir=" + data, "--listen=" + address, "--metrics_listen=",
            "--require_tokens", "--tls=on"])
        self.addCleanup(self.procs.stop, schedd)
        token_file = os.path.join(data, "admin.token")
        ca_file = os.path.join(data, "tls", "ca.crt")
        spec = json.dumps({"name": "py-token", "run": "true"})

        deadline = time.monotonic() + 30
        while True:
            self.procs.check_running()
            ok = None
            if os.path.exists(token_file) and os.path.exists(ca_file):
                ok = self.client("--token-file", token_file, "--ca-file", ca_file, "--timeout",
                                 "2", "submit", "-", stdin=spec, server=address)
                if ok.returncode == 0:
                    break
            if time.monotonic() > deadline:
                self.fail("no submit with the admin token within 30 s: %r\n%s" % (
                    ok and ok.stderr, self.procs.log("schedd-secure")))
            time.sleep(0.3)
        self.assertRegex(ok.stdout, r"^job/[0-9a-f]{16} submitted$")

        without = self.client("--ca-file", ca_file, "submit", "-", stdin=spec, server=address)
        self.assertExit(without, 3)
        self.assertIn("SubmitJob: UNAUTHENTICATED", without.stderr)

        with open(token_file) as f:
            token = f.readline().strip()
        nodes = self.client("--token", token, "--ca-file", ca_file, "nodes", server=address)
        self.assertExit(nodes, 0)
        wrong = self.client("--token", token + "x", "--ca-file", ca_file, "nodes", server=address)
        self.assertExit(wrong, 3)
        self.assertIn("ListNodes: UNAUTHENTICATED", wrong.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
