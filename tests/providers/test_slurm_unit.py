"""sched-provider-slurm against a fake command runner: the sbatch command line it builds, how
squeue and sacct states map onto the protocol's, and sinfo's node shapes as offers."""
import os
import shutil
import tempfile
import unittest

from provider_testing import (ANY, TOKEN, FakeClock, FakeRunner, context, create_request,
                              load_program, request, result, run_op, sp)

slurm = load_program("slurm")

SINFO = ["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%N"]
SINFO_OUT = """gpu*|64|515000|gpu:a100:4(S:0-1)|gpu01
gpu*|64|515000|gpu:a100:4(S:0-1)|gpu02
gpu*|32|257000|gpu:2|gpu03
cpu|128|1031000+|(null)|cpu01
"""


def squeue_named(node="node-1"):
    return ["squeue", "-h", "--me", "-n", "sched-" + node, "-o", "%i"]


def squeue_job(job):
    return ["squeue", "-h", "-j", job, "-o", "%T"]


def sacct_job(job):
    return ["sacct", "-n", "-X", "-j", job, "-o", "State"]


class SlurmTest(unittest.TestCase):
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="sched_provider_slurm_test.")
        self.addCleanup(shutil.rmtree, self.home, ignore_errors=True)
        self.environ = {"HOME": self.home, "PATH": "/usr/bin:/bin", "USER": "lab",
                        "SBATCH_ACCOUNT": "ml", "RUNPOD_API_KEY": "not-for-jobs",
                        "SCHED_TOKEN": "admin.schedds-own"}
        self.clock = FakeClock()
        self.config = {"agent": "/opt/sched/bin/sched-agent", "price_per_hour": 0.2,
                       "gpu_memory_gib": {"a100": 80}}

    def run_op(self, op, req, script):
        runner = FakeRunner(self, script)
        outcome = run_op(slurm, op, req, context(self, runner=runner, environ=self.environ,
                                                 clock=self.clock))
        runner.done()
        return outcome, runner

    def test_offers_are_the_node_shapes_per_partition(self):
        outcome, _ = self.run_op("offers", request("offers", self.config),
                                 [(SINFO, result(SINFO_OUT))])
        self.assertEqual(outcome.code, 0, outcome)
        offers = outcome.reply["offers"]
        self.assertEqual([o["id"] for o in offers], [
            "cpu.128cpu.1007gib", "gpu.32cpu.251gib.2xgpu", "gpu.64cpu.503gib.4xa100"])
        self.assertEqual(offers[2], {
            "id": "gpu.64cpu.503gib.4xa100", "gpu": "a100", "gpu_count": 4,
            "gpu_memory_gib": 80, "cpus": 64, "memory_gib": 502.9, "price_per_hour": 0.2,
            "spot": False, "region": "", "instance_type": "gpu", "provisioning_seconds": 60})
        self.assertEqual((offers[0]["gpu"], offers[0]["gpu_count"]), ("", 0))
        self.assertEqual((offers[1]["gpu"], offers[1]["gpu_count"], offers[1]["gpu_memory_gib"]),
                         ("gpu", 2, 0))

    def test_offers_of_one_partition(self):
        self.config["partition"] = "cpu"
        outcome, _ = self.run_op("offers", request("offers", self.config),
                                 [(SINFO + ["--partition=cpu"], result("cpu|8|16000|(null)|c1\n"))])
        self.assertEqual([o["id"] for o in outcome.reply["offers"]], ["cpu.8cpu.16gib"])

    def test_gres_fields(self):
        self.assertEqual(slurm.parse_gres("gpu:a100:4(S:0-1)"), ("a100", 4))
        self.assertEqual(slurm.parse_gres("gpu:h100:8(S:0-1),shard:h100:64"), ("h100", 8))
        self.assertEqual(slurm.parse_gres("gpu:2"), ("gpu", 2))
        self.assertEqual(slurm.parse_gres("(null)"), ("", 0))
        self.assertEqual(slurm.parse_gres("mps:100"), ("", 0))

    def test_sinfo_that_is_not_ours_is_an_error(self):
        outcome, _ = self.run_op("offers", request("offers", self.config),
                                 [(SINFO, result("PARTITION AVAIL\n"))])
        self.assertEqual(outcome.code, 1)
        self.assertEqual(outcome.reply["error"], "sinfo printed 'PARTITION AVAIL', not "
                                                 "partition|cpus|memory|gres|node")

    def test_a_failing_command_says_what_it_said(self):
        outcome, _ = self.run_op("offers", request("offers", self.config), [
            (SINFO, result("", 1, "sinfo: error: Unable to contact slurm controller\n"))])
        self.assertEqual(outcome.reply, {"error": "sinfo failed (exit 1): sinfo: error: Unable "
                                                  "to contact slurm controller"})

    def test_create_submits_the_agent_with_the_token_only_in_the_environment(self):
        self.config["time_limit"] = "7-00:00:00"
        self.config["extra_sbatch_args"] = ["--qos=long"]
        req = create_request(self.config, "gpu.64cpu.503gib.4xa100", provider_name="lab")
        work = os.path.join(self.home, "sched-agent-node-1")
        wrap = ("mkdir -p %s && exec /opt/sched/bin/sched-agent --server=sched.example.org:7070 "
                "--name=node-1 --ca_pin=sha256:0f1e2d3c4b5a --provider=test "
                "--price_per_hour=0.5 --spot=false --region=lab-1 --instance_type=test-type "
                "--labels=pool=dev,team=ml --work_dir=%s --metrics_listen= "
                "--gpu_detection=auto" % (work, work))
        sbatch = ["sbatch", "--parsable", "--job-name=sched-node-1", "--partition=gpu",
                  "--nodes=1", "--cpus-per-task=64", "--gres=gpu:a100:4",
                  "--output=%s/agent.log" % work, "--time=7-00:00:00", "--export=ALL",
                  "--qos=long", "--wrap", wrap]
        outcome, runner = self.run_op("create", req, [
            (squeue_named(), result("")), (SINFO, result(SINFO_OUT)),
            (sbatch, result("4242;cluster\n"))])
        self.assertEqual(outcome.code, 0, outcome)
        self.assertEqual(outcome.reply["instance_id"], "4242")
        env = runner.calls[2]["env"]
        self.assertEqual(env, {"HOME": self.home, "PATH": "/usr/bin:/bin", "USER": "lab",
                               "SBATCH_ACCOUNT": "ml", "SCHED_TOKEN": TOKEN})
        for call in runner.calls:
            self.assertNotIn(TOKEN, " ".join(call["argv"]))
        self.assertTrue(os.path.isdir(work))

    def test_create_with_a_configured_offer_and_work_dir(self):
        self.config["offers"] = [{"id": "big", "gpu": "h100", "gpu_count": 8,
                                  "gpu_memory_gib": 80, "cpus": 96, "memory_gib": 1000,
                                  "price_per_hour": 0, "spot": True, "region": "hall-b",
                                  "instance_type": "dgx", "partition": "dgx"}]
        self.config["work_dir"] = os.path.join(self.home, "scratch", "{node_name}", "agent")
        work = os.path.join(self.home, "scratch", "node-1", "agent")
        outcome, runner = self.run_op("create", create_request(self.config, "big"), [
            (squeue_named(), result("")),
            (["sbatch", "--parsable", "--job-name=sched-node-1", "--partition=dgx", "--nodes=1",
              "--cpus-per-task=96", "--gres=gpu:8", "--output=%s/agent.log" % work,
              "--export=ALL", "--wrap", ANY], result("77\n"))])
        self.assertEqual(outcome.reply["instance_id"], "77", outcome)
        self.assertIn("--work_dir=%s " % work, runner.calls[1]["argv"][-1])

    def test_create_again_finds_the_job_by_name(self):
        outcome, _ = self.run_op("create", create_request(self.config, "anything"),
                                 [(squeue_named(), result("4242\n"))])
        self.assertEqual(outcome.reply, {"instance_id": "4242", "message": "job 4242 named "
                                         "sched-node-1 was already submitted"})

    def test_squeue_states(self):
        cases = [("PENDING", "pending"), ("CONFIGURING", "pending"), ("RUNNING", "running"),
                 ("SUSPENDED", "pending"), ("COMPLETING", "gone"), ("NODE_FAIL", "failed")]
        for squeue_state, state in cases:
            outcome, _ = self.run_op("status", request("status", self.config, instance_id="9",
                                                       node_name="node-1"),
                                     [(squeue_job("9"), result(squeue_state + "\n"))])
            self.assertEqual(outcome.reply, {"state": state,
                                             "message": "job 9 is " + squeue_state})

    def test_ended_jobs_are_asked_of_sacct(self):
        cases = [("COMPLETED", "gone"), ("CANCELLED by 1000", "gone"), ("TIMEOUT", "gone"),
                 ("FAILED", "failed"), ("NODE_FAIL", "failed"), ("OUT_OF_MEMORY+", "failed"),
                 ("PREEMPTED", "gone")]
        for sacct_state, state in cases:
            outcome, _ = self.run_op("status", request("status", self.config, instance_id="9",
                                                       node_name="node-1"), [
                (squeue_job("9"), result("", 1, "slurm_load_jobs error: Invalid job id "
                                                "specified\n")),
                (sacct_job("9"), result("  %s  \n" % sacct_state))])
            self.assertEqual(outcome.reply["state"], state, sacct_state)

    def test_without_sacct_an_ended_job_is_gone(self):
        outcome, _ = self.run_op("status", request("status", self.config, instance_id="9",
                                                   node_name="node-1"), [
            (squeue_job("9"), result("")),
            (sacct_job("9"), sp.CommandNotFound("sacct: command not found on PATH"))])
        self.assertEqual(outcome.reply, {"state": "gone",
                                         "message": "job 9 is no longer known to Slurm"})
        outcome, _ = self.run_op("status", request("status", self.config, instance_id="9",
                                                   node_name="node-1"), [
            (squeue_job("9"), result("")),
            (sacct_job("9"), result("", 1, "Slurm accounting storage is disabled"))])
        self.assertEqual(outcome.reply["state"], "gone")

    def test_status_by_node_name(self):
        outcome, _ = self.run_op("status", request("status", self.config, instance_id="",
                                                   node_name="node-1"),
                                 [(squeue_named(), result("31\n")),
                                  (squeue_job("31"), result("RUNNING\n"))])
        self.assertEqual(outcome.reply["state"], "running")
        outcome, _ = self.run_op("status", request("status", self.config, instance_id="",
                                                   node_name="node-1"),
                                 [(squeue_named(), result(""))])
        self.assertEqual(outcome.reply, {"state": "gone",
                                         "message": "no Slurm job named sched-node-1"})

    def test_delete_cancels_and_waits_for_the_job_to_leave(self):
        outcome, _ = self.run_op("delete", request("delete", self.config, instance_id="9",
                                                   node_name="node-1"), [
            (["scancel", "9"], result("")), (squeue_job("9"), result("RUNNING\n")),
            (squeue_job("9"), result("COMPLETING\n")), (squeue_job("9"), result(""))])
        self.assertEqual(outcome.reply, {"state": "gone", "message": "cancelled job 9"})
        self.assertEqual(self.clock.slept, [1, 1])

    def test_delete_that_outlasts_its_wait_is_deleting(self):
        script = [(["scancel", "9"], result(""))]
        script += [(squeue_job("9"), result("COMPLETING\n"))] * 11
        outcome, _ = self.run_op("delete", request("delete", self.config, instance_id="9",
                                                   node_name="node-1"), script)
        self.assertEqual(outcome.reply, {"state": "deleting",
                                         "message": "cancel sent; job 9 is COMPLETING"})
        self.assertEqual(sum(self.clock.slept), 10)

    def test_delete_by_name_and_of_a_finished_job(self):
        outcome, _ = self.run_op("delete", request("delete", self.config, instance_id="",
                                                   node_name="node-1"), [
            (["scancel", "-n", "sched-node-1"], result("")), (squeue_named(), result(""))])
        self.assertEqual(outcome.reply["state"], "gone")
        outcome, _ = self.run_op("delete", request("delete", self.config, instance_id="9",
                                                   node_name="node-1"), [
            (["scancel", "9"], result("", 1, "scancel: error: Kill job error on job id 9: "
                                             "Invalid job id specified\n")),
            (squeue_job("9"), result("", 1, "slurm_load_jobs error: Invalid job id "
                                            "specified\n"))])
        self.assertEqual(outcome.reply["state"], "gone")


if __name__ == "__main__":
    unittest.main()
