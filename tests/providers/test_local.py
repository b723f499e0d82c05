"""sched-provider-local run for real, as schedd runs it: a subprocess per op, with a fake agent
(fake_agent.py) that notes how it was started and sleeps."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from provider_testing import HERE, TOKEN, create_request, program_path, request

PROGRAM = program_path("local")
FAKE_AGENT = os.path.join(HERE, "fake_agent.py")


def alive(pid):
    """Running, not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def read(path):
    with open(path) as f:
        return f.read()


def wait_for(predicate, seconds=5.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class LocalProviderTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sched_provider_local_test.")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.state = os.path.join(self.dir, "state")
        self.config = {
            "agent": FAKE_AGENT, "state_dir": self.state, "stop_grace_seconds": 0.5,
            "offers": [
                {"id": "cpu", "price_per_hour": 0.1, "region": "desk", "instance_type": "cpu"},
                {"id": "gpu2", "gpu": "NVIDIA GeForce RTX 4090", "gpu_count": 2,
                 "gpu_memory_gib": 24, "cpus": 8, "memory_gib": 32, "price_per_hour": 0.8,
                 "spot": True, "region": "desk", "instance_type": "2x4090",
                 "extra_agent_args": ["--fake_job"]},
                {"id": "slow", "provisioning_seconds": 30},
                {"id": "stuck", "behavior": "never-joins"},
                {"id": "broken", "behavior": "fail-create"},
                {"id": "hang", "behavior": "hang-create"},
                {"id": "stubborn", "extra_agent_args": ["--fake_ignore_term", "--fake_job"]},
                {"id": "dies", "extra_agent_args": ["--fake_exit_after=0.2"]},
            ]}
        self.env = {k: v for k, v in os.environ.items() if k not in ("SCHED_AGENT_BIN",)}
        # schedd's own token must never reach an agent.
        self.env["SCHED_TOKEN"] = "admin.schedds-own"
        self.env["SCHED_TOKEN_FILE"] = "/nonexistent/admin.token"
        self.groups = []
        self.addCleanup(self.kill_leftovers)

    def kill_leftovers(self):
        for pgid in self.groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass

    def op(self, op, req, timeout=20):
        proc = subprocess.run([PROGRAM, op], input=json.dumps(req), capture_output=True,
                              text=True, env=self.env, timeout=timeout)
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 1, "want one JSON line, got %r (stderr %r)"
                         % (proc.stdout, proc.stderr))
        return proc.returncode, json.loads(lines[0]), proc.stderr

    def ok(self, op, req):
        code, reply, stderr = self.op(op, req)
        self.assertEqual(code, 0, "%s: %s %s" % (op, reply, stderr))
        return reply

    def create(self, offer_id, node_name, **agent_overrides):
        return self.ok("create", create_request(self.config, offer_id, node_name,
                                                provider_name="dev", **agent_overrides))

    def status(self, node_name, instance_id=None):
        return self.ok("status", request("status", self.config, "dev", node_name=node_name,
                                         instance_id=node_name if instance_id is None
                                         else instance_id))

    def delete(self, node_name):
        return self.ok("delete", request("delete", self.config, "dev", node_name=node_name,
                                         instance_id=node_name))

    def folder(self, node_name):
        return os.path.join(self.state, node_name)

    def agent_record(self, node_name):
        path = os.path.join(self.folder(node_name), "work", "fake_agent.json")
        wait_for(lambda: os.path.exists(path), what=path)
        with open(path) as f:
            record = json.load(f)
        self.groups.append(record["pgid"])
        if record["job_pgid"]:
            self.groups.append(record["job_pgid"])
        return record

    def test_offers_fill_in_this_machine_and_hide_local_settings(self):
        offers = self.ok("offers", request("offers", self.config, "dev"))["offers"]
        self.assertEqual([o["id"] for o in offers],
                         ["cpu", "gpu2", "slow", "stuck", "broken", "hang", "stubborn", "dies"])
        cpu = offers[0]
        self.assertEqual(cpu["cpus"], os.cpu_count())
        self.assertGreater(cpu["memory_gib"], 0)
        self.assertEqual((cpu["gpu"], cpu["gpu_count"], cpu["provisioning_seconds"]), ("", 0, 0))
        self.assertEqual(offers[1], {
            "id": "gpu2", "gpu": "NVIDIA GeForce RTX 4090", "gpu_count": 2,
            "gpu_memory_gib": 24, "cpus": 8, "memory_gib": 32, "price_per_hour": 0.8,
            "spot": True, "region": "desk", "instance_type": "2x4090",
            "provisioning_seconds": 0})

    def test_a_bad_offer_in_config_is_named(self):
        self.config["offers"][3]["behavior"] = "explode"
        code, reply, _ = self.op("offers", request("offers", self.config, "dev"))
        self.assertEqual(code, 1)
        self.assertEqual(reply["error"], 'config.offers[3].behavior: want normal, never-joins, '
                                         'fail-create, hang-create, got "explode"')

    def test_gpus_the_agent_cannot_be_told_of_are_refused_in_offers(self):
        self.config["offers"][1]["gpu_memory_gib"] = 0
        code, reply, _ = self.op("offers", request("offers", self.config, "dev"))
        self.assertEqual((code, reply), (1, {"error": 'config.offers[1]: GPU model "NVIDIA '
                                                      'GeForce RTX 4090" has no memory size '
                                                      '(gpu_memory_gib): the agent advertises '
                                                      'GPUs with their memory'}))

    def test_create_starts_the_agent_with_its_argv_and_token(self):
        reply = self.create("gpu2", "gpu-node-1", spot=True, price_per_hour=0.8)
        self.assertEqual(reply["instance_id"], "gpu-node-1")
        record = self.agent_record("gpu-node-1")
        work = os.path.join(self.folder("gpu-node-1"), "work")
        self.assertEqual(record["argv"], [
            FAKE_AGENT, "--server=sched.example.org:7070", "--name=gpu-node-1",
            "--ca_pin=sha256:0f1e2d3c4b5a", "--provider=test", "--price_per_hour=0.8",
            "--spot=true", "--region=lab-1", "--instance_type=test-type",
            "--labels=pool=dev,team=ml", "--work_dir=" + work, "--metrics_listen=",
            "--gpu_detection=none", "--advertise_gpus=2x NVIDIA GeForce RTX 4090:24GB",
            "--fake_job"])
        self.assertEqual(record["token"], TOKEN)
        self.assertIsNone(record["token_file"])
        self.assertNotIn(TOKEN, " ".join(record["argv"]))
        # Its own session: schedd killing the provider's process group leaves it alone.
        self.assertEqual(record["sid"], record["pid"])
        self.assertNotEqual(record["sid"], os.getsid(0))
        with open(os.path.join(self.folder("gpu-node-1"), "instance.json")) as f:
            instance = json.load(f)
        self.assertEqual((instance["offer_id"], instance["pid"]), ("gpu2", record["pid"]))
        self.assertNotIn(TOKEN, json.dumps(instance))
        log = os.path.join(self.folder("gpu-node-1"), "agent.log")
        wait_for(lambda: "fake agent up" in read(log), what="the agent's log")
        self.assertEqual(self.status("gpu-node-1")["state"], "running")

    def test_no_token_means_no_token_in_the_environment(self):
        self.create("cpu", "plain", join_token="")
        self.assertIsNone(self.agent_record("plain")["token"])

    def test_create_again_returns_the_same_instance_and_starts_nothing(self):
        self.create("cpu", "twice")
        first = self.agent_record("twice")
        reply = self.create("cpu", "twice")
        self.assertEqual(reply["instance_id"], "twice")
        self.assertIn("already created", reply["message"])
        time.sleep(0.2)
        self.assertEqual(self.agent_record("twice")["pid"], first["pid"])
        self.assertEqual(read(os.path.join(self.folder("twice"), "agent.log")).count(
            "fake agent up"), 1)

    def test_delete_ends_the_agents_process_group(self):
        self.create("cpu", "short-lived")
        record = self.agent_record("short-lived")
        self.assertTrue(alive(record["pid"]) and alive(record["child_pid"]))
        reply = self.delete("short-lived")
        self.assertEqual(reply["state"], "gone")
        self.assertIn("agent stopped with SIGTERM", reply["message"])
        wait_for(lambda: not alive(record["pid"]) and not alive(record["child_pid"]),
                 what="the agent and its child to end")
        self.assertEqual(self.status("short-lived")["state"], "gone")
        self.assertTrue(os.path.exists(os.path.join(self.folder("short-lived"), "agent.log")))
        self.assertFalse(os.path.exists(os.path.join(self.folder("short-lived"),
                                                     "instance.json")))
        self.assertEqual(self.delete("short-lived")["state"], "gone")  # idempotent

    def test_an_agent_deaf_to_sigterm_is_killed_with_the_jobs_it_leaves(self):
        self.create("stubborn", "deaf")
        record = self.agent_record("deaf")
        self.assertTrue(alive(record["job_pgid"]))
        reply = self.delete("deaf")
        self.assertEqual(reply["state"], "gone")
        self.assertIn("agent stopped with SIGKILL", reply["message"])
        self.assertIn("killed 1 job process group(s) it left", reply["message"])
        wait_for(lambda: not alive(record["pid"]) and not alive(record["job_pgid"]),
                 what="the agent and its job to end")

    def test_never_joins_stays_pending_until_deleted(self):
        self.assertEqual(self.create("stuck", "stuck-1")["instance_id"], "stuck-1")
        reply = self.status("stuck-1")
        self.assertEqual(reply["state"], "pending")
        self.assertFalse(os.path.exists(os.path.join(self.folder("stuck-1"), "work",
                                                     "fake_agent.json")))
        self.assertEqual(self.delete("stuck-1")["state"], "gone")
        self.assertEqual(self.status("stuck-1")["state"], "gone")

    def test_fail_create_exits_1_with_an_error(self):
        code, reply, stderr = self.op("create", create_request(self.config, "broken", "b-1",
                                                               provider_name="dev"))
        self.assertEqual(code, 1)
        self.assertEqual(reply, {"error": "offer broken is set to fail creates (behavior "
                                          "fail-create in config.offers); nothing was created"})
        self.assertEqual(self.status("b-1")["state"], "gone")

    def test_hang_create_hangs_until_killed(self):
        proc = subprocess.Popen([PROGRAM, "create"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=self.env, start_new_session=True)
        self.groups.append(proc.pid)
        proc.stdin.write(json.dumps(create_request(self.config, "hang", "h-1",
                                                   provider_name="dev")).encode())
        proc.stdin.close()
        with self.assertRaises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        os.killpg(proc.pid, signal.SIGKILL)  # as schedd does at its timeout
        proc.wait()
        self.assertEqual(proc.stdout.read(), b"")
        proc.stdout.close()

    def test_a_node_is_pending_while_it_provisions(self):
        self.create("slow", "slow-1")
        self.assertTrue(os.path.exists(os.path.join(self.folder("slow-1"), "instance.json")))
        reply = self.status("slow-1")
        self.assertEqual(reply["state"], "pending")
        self.assertIn("provisioning", reply["message"])
        with open(os.path.join(self.folder("slow-1"), "instance.json")) as f:
            self.groups.append(json.load(f)["pid"])
        self.assertEqual(self.delete("slow-1")["state"], "gone")

    def test_a_dead_agent_is_failed_with_its_last_words(self):
        self.create("dies", "dies-1")
        self.agent_record("dies-1")
        reply = wait_for(lambda: (lambda r: r if r["state"] != "running" else None)(
            self.status("dies-1")), what="the agent to die")
        self.assertEqual(reply["state"], "failed")
        self.assertIn("fake agent: cannot reach schedd, giving up", reply["message"])

    def test_status_by_node_name_alone(self):
        self.create("cpu", "by-name")
        self.agent_record("by-name")
        self.assertEqual(self.status("by-name", instance_id="")["state"], "running")
        self.assertEqual(self.status("never-made", instance_id="")["state"], "gone")

    def test_the_agent_comes_from_config_env_or_path(self):
        del self.config["agent"]
        self.env["SCHED_AGENT_BIN"] = FAKE_AGENT
        self.create("cpu", "from-env")
        self.assertEqual(self.agent_record("from-env")["argv"][0], FAKE_AGENT)
        del self.env["SCHED_AGENT_BIN"]
        self.env["PATH"] = "/usr/bin:/bin"
        code, reply, _ = self.op("create", create_request(self.config, "cpu", "nowhere",
                                                          provider_name="dev"))
        self.assertEqual((code, reply), (1, {"error": "no sched-agent to start: set config.agent "
                                                      "or $SCHED_AGENT_BIN to its path, or put it "
                                                      "on PATH"}))

    def test_an_unknown_offer_is_refused(self):
        code, reply, _ = self.op("create", create_request(self.config, "h100", "x-1",
                                                          provider_name="dev"))
        self.assertEqual(code, 1)
        self.assertIn('offer_id "h100" is not among this provider\'s offers now (cpu, gpu2',
                      reply["error"])

    def test_state_dir_defaults_under_xdg_state_home(self):
        del self.config["state_dir"]
        self.env["XDG_STATE_HOME"] = os.path.join(self.dir, "xdg")
        self.config["offers"] = [{"id": "stuck", "behavior": "never-joins"}]
        self.create("stuck", "xdg-1")
        self.assertTrue(os.path.exists(os.path.join(self.dir, "xdg", "sched-provider-local",
                                                    "dev", "xdg-1", "instance.json")))


if __name__ == "__main__":
    unittest.main()
