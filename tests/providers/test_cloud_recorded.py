"""The RunPod, Vast.ai and AWS providers against recorded shapes (recorded/*.json), written from
each service's public documentation: the exact request each op builds, how the answers become
offers, instance ids and states, and that failures give exit 1 and a message a person can act
on. None of this has been run against the live services."""
import base64
import json
import os
import shlex
import subprocess
import unittest

from provider_testing import (TOKEN, FakeRunner, FakeTransport, context, create_request,
                              load_program, recorded, request, result, run_op)

runpod = load_program("runpod")
vast = load_program("vast")
aws = load_program("aws")

BUNDLE = "https://downloads.example.org/sched-agent-linux-amd64.tar.gz"
AGENT_LINE = ("sched-agent --server=sched.example.org:7070 --name=node-1 "
              "--ca_pin=sha256:0f1e2d3c4b5a --provider=test --price_per_hour=%s --spot=%s "
              "--region=lab-1 --instance_type=test-type --labels=pool=dev,team=ml "
              "--work_dir=/var/lib/sched-agent --metrics_listen= --gpu_detection=auto")


def status_request(config, instance_id, node_name="node-1"):
    return request("status", config, instance_id=instance_id, node_name=node_name)


def delete_request(config, instance_id, node_name="node-1"):
    return request("delete", config, instance_id=instance_id, node_name=node_name)


class RecordedTest(unittest.TestCase):
    """Runs an op of `program` against one recorded scenario, all of whose steps it must use."""
    program = None
    service = None
    environ = {}

    def scenario(self, name):
        return recorded(self.service)["scenarios"][name]

    def run_recorded(self, name, op, req):
        transport = FakeTransport(self, self.scenario(name))
        outcome = run_op(self.program, op, req, context(self, transport=transport,
                                                        environ=dict(self.environ)))
        transport.done()
        self.assertNotIn(TOKEN, outcome.stdout + outcome.stderr)
        return outcome, transport

    def assert_ok(self, outcome, reply):
        self.assertEqual((outcome.code, outcome.reply), (0, reply), outcome.stderr)

    def assert_error(self, outcome, message):
        self.assertEqual((outcome.code, outcome.reply), (1, {"error": message}))


def offer(id, gpu, count, gpu_gib, cpus, memory_gib, price, spot, region, instance_type,
          provisioning, **more):
    value = {"id": id, "gpu": gpu, "gpu_count": count, "gpu_memory_gib": gpu_gib, "cpus": cpus,
             "memory_gib": memory_gib, "price_per_hour": price, "spot": spot, "region": region,
             "instance_type": instance_type, "provisioning_seconds": provisioning}
    value.update(more)
    return value


class RunPodTest(RecordedTest):
    program = runpod
    service = "runpod"
    config = {"api_key": "rp-test-key", "agent_bundle_url": BUNDLE}

    def test_offers_per_gpu_type_count_and_market(self):
        config = dict(self.config, gpu_counts=[1, 2])
        outcome, _ = self.run_recorded("offers", "offers", request("offers", config))
        h100 = ("NVIDIA H100 80GB HBM3", 1, 80, 16, 125)
        self.assert_ok(outcome, {"offers": [
            offer("NVIDIA_H100_80GB_HBM3.1x.ondemand", *h100, 2.99, False, "", "1x H100 SXM",
                  300, disk_gib=40),
            offer("NVIDIA_H100_80GB_HBM3.1x.spot", *h100, 1.75, True, "", "1x H100 SXM", 300,
                  disk_gib=40),
            offer("NVIDIA_GeForce_RTX_4090.1x.ondemand", "NVIDIA GeForce RTX 4090", 1, 24, 6, 41,
                  0.69, False, "", "1x RTX 4090", 300, disk_gib=40),
            offer("NVIDIA_H100_80GB_HBM3.2x.ondemand", "NVIDIA H100 80GB HBM3", 2, 80, 32, 250,
                  5.98, False, "", "2x H100 SXM", 300, disk_gib=40),
            offer("NVIDIA_H100_80GB_HBM3.2x.spot", "NVIDIA H100 80GB HBM3", 2, 80, 32, 250, 3.6,
                  True, "", "2x H100 SXM", 300, disk_gib=40),
        ]})

    def test_create_rents_a_spot_pod_that_starts_the_agent(self):
        outcome, transport = self.run_recorded(
            "create_spot", "create",
            create_request(self.config, "NVIDIA_H100_80GB_HBM3.1x.spot", spot=True,
                           price_per_hour=1.75))
        self.assert_ok(outcome, {"instance_id": "9qvzk1m5h3xw2a",
                                 "message": "pod 9qvzk1m5h3xw2a: RUNNING"})
        sent = transport.requests[-1]["json"]
        env = {e["key"]: e["value"] for e in sent["variables"]["input"]["env"]}
        self.assertEqual(env["SCHED_TOKEN"], TOKEN)
        self.assertEqual(json.dumps(sent).count(TOKEN), 1)  # in the pod's env, nowhere else
        script = base64.b64decode(env["SCHED_BOOTSTRAP_B64"]).decode()
        self.assertIn("sched_fetch_agent %s" % shlex.quote(BUNDLE), script)
        self.assertTrue(script.rstrip().endswith("exec " + AGENT_LINE % ("1.75", "true")))
        self.assertNotIn(TOKEN, script)
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)

    def test_a_graphql_error_is_exit_1_with_runpods_words(self):
        outcome, _ = self.run_recorded("create_on_demand_sold_out", "create", create_request(
            self.config, "NVIDIA_GeForce_RTX_4090.1x.ondemand", price_per_hour=0.69))
        self.assert_error(outcome, "RunPod refused SchedDeployOnDemand: There are no longer any "
                                   "instances available with the requested specifications. "
                                   "Please refresh and try again.")

    def test_create_again_returns_the_pod_named_after_the_node(self):
        outcome, _ = self.run_recorded("create_again", "create", create_request(
            self.config, "NVIDIA_H100_80GB_HBM3.1x.spot"))
        self.assert_ok(outcome, {"instance_id": "9qvzk1m5h3xw2a",
                                 "message": "pod 9qvzk1m5h3xw2a named node-1 already exists"})

    def test_pod_states(self):
        cases = [
            ("status_running", "running", "pod 9qvzk1m5h3xw2a is RUNNING: Rented by User: Tue "
                                          "Jan 16 2024 10:00:00 GMT+0000"),
            ("status_starting", "pending", "pod 9qvzk1m5h3xw2a is RUNNING"),
            ("status_exited", "failed", "pod 9qvzk1m5h3xw2a is EXITED: Exited by RunPod: spot "
                                        "pod outbid"),
            ("status_unknown_pod", "gone", "no pod 9qvzk1m5h3xw2a"),
        ]
        for name, state, message in cases:
            outcome, _ = self.run_recorded(name, "status",
                                           status_request(self.config, "9qvzk1m5h3xw2a"))
            self.assert_ok(outcome, {"state": state, "message": message})
        outcome, _ = self.run_recorded("status_by_name_gone", "status",
                                       status_request(self.config, ""))
        self.assert_ok(outcome, {"state": "gone", "message": "no pod named node-1"})

    def test_delete_terminates_the_pod_found_by_name(self):
        outcome, _ = self.run_recorded("delete", "delete", delete_request(self.config, ""))
        self.assert_ok(outcome, {"state": "gone", "message": "terminated pod 9qvzk1m5h3xw2a"})
        outcome, _ = self.run_recorded("delete_terminated", "delete",
                                       delete_request(self.config, "9qvzk1m5h3xw2a"))
        self.assert_ok(outcome, {"state": "gone",
                                 "message": "no pod 9qvzk1m5h3xw2a to terminate"})

    def test_http_401_names_where_the_key_comes_from(self):
        outcome, _ = self.run_recorded("unauthorized", "offers", request("offers", self.config))
        self.assert_error(outcome, "RunPod answered HTTP 401 to POST /graphql: Unauthorized "
                                   "(check config.api_key or RUNPOD_API_KEY)")

    def test_the_key_may_come_from_the_environment_and_must_come_from_somewhere(self):
        config = {"agent_bundle_url": BUNDLE}
        self.environ = {"RUNPOD_API_KEY": "rp-test-key"}
        outcome, _ = self.run_recorded("create_again", "create",
                                       create_request(config, "NVIDIA_H100_80GB_HBM3.1x.spot"))
        self.assertEqual(outcome.code, 0, outcome)
        outcome = run_op(runpod, "offers", request("offers", config), context(self))
        self.assert_error(outcome, "no RunPod API key: set config.api_key or the environment "
                                   "variable RUNPOD_API_KEY for schedd")


class VastTest(RecordedTest):
    program = vast
    service = "vast"
    config = {"api_key": "vast-test-key", "agent_bundle_url": BUNDLE}

    def test_offers_are_the_cheapest_ask_per_gpu_model_and_count(self):
        outcome, _ = self.run_recorded("offers", "offers", request("offers", self.config))
        rtx = ("RTX 4090", 1, 24.0, 8.0, 62.9)
        self.assert_ok(outcome, {"offers": [
            offer("H100_SXM.8x.ondemand", "H100 SXM", 8, 79.6, 224.0, 2015.4, 19.6, False,
                  "Virginia, US", "8x H100 SXM", 300, disk_gib=40, available=1),
            offer("RTX_4090.1x.ondemand", *rtx, 0.352, False, "Sweden, SE", "1x RTX 4090", 300,
                  disk_gib=40, available=2),
            offer("RTX_4090.1x.spot", *rtx, 0.21, True, "Sweden, SE", "1x RTX 4090", 300,
                  disk_gib=40, available=1),
        ]})

    def test_create_takes_the_next_ask_when_the_cheapest_is_gone(self):
        outcome, transport = self.run_recorded("create_on_demand", "create", create_request(
            self.config, "RTX_4090.1x.ondemand", price_per_hour=0.352))
        self.assert_ok(outcome, {"instance_id": "7835610",
                                 "message": "rented ask 11223355 at $0.371/h"})
        onstart = transport.requests[-1]["json"]["onstart"]
        self.assertIn("sched_fetch_agent %s" % shlex.quote(BUNDLE), onstart)
        self.assertIn("nohup " + AGENT_LINE % ("0.352", "false") +
                      " >>/var/lib/sched-agent/agent.log 2>&1 </dev/null &", onstart)
        self.assertNotIn(TOKEN, onstart)
        subprocess.run(["sh", "-n"], input=onstart, text=True, check=True)

    def test_create_bids_for_a_spot_instance(self):
        outcome, _ = self.run_recorded("create_spot", "create", create_request(
            self.config, "RTX_4090.1x.spot", spot=True, price_per_hour=0.21))
        self.assert_ok(outcome, {"instance_id": "7835611",
                                 "message": "rented ask 11223344 at $0.21/h"})

    def test_create_refuses_an_ask_dearer_than_agreed(self):
        outcome, _ = self.run_recorded("create_spot_too_dear", "create", create_request(
            self.config, "RTX_4090.1x.spot", spot=True, price_per_hour=0.25))
        self.assert_error(outcome, "Vast.ai rented nothing for offer RTX_4090.1x.spot: ask "
                                   "11223344 costs $0.31/h, over $0.25/h")

    def test_create_again_returns_the_instance_labelled_with_the_node(self):
        outcome, _ = self.run_recorded("create_again", "create",
                                       create_request(self.config, "RTX_4090.1x.ondemand"))
        self.assert_ok(outcome, {"instance_id": "7835610",
                                 "message": "instance 7835610 labelled node-1 already exists"})

    def test_instance_states(self):
        cases = [
            ("7835610", "node-1", "running", "instance 7835610 is running: success, running "
                                             "nvidia/cuda_12.4.1-runtime-ubuntu22.04/ssh"),
            ("", "node-2", "pending", "instance 7835612 is being provisioned"),
            ("7835613", "node-3", "failed", "instance 7835613 is exited: container exited "
                                            "with code 1"),
            ("7835614", "node-4", "gone", "no instance 7835614"),
            ("", "node-9", "gone", "no instance labelled node-9"),
        ]
        for instance_id, node, state, message in cases:
            outcome, _ = self.run_recorded("status", "status",
                                           status_request(self.config, instance_id, node))
            self.assert_ok(outcome, {"state": state, "message": message})

    def test_delete_destroys_the_instance(self):
        outcome, _ = self.run_recorded("delete", "delete", delete_request(self.config, ""))
        self.assert_ok(outcome, {"state": "gone", "message": "destroyed instance 7835610"})
        outcome, _ = self.run_recorded("status", "delete", delete_request(self.config, "1"))
        self.assert_ok(outcome, {"state": "gone", "message": "no instance 1 to destroy"})

    def test_http_401_names_where_the_key_comes_from(self):
        outcome, _ = self.run_recorded("unauthorized", "status",
                                       status_request(self.config, "7835610"))
        self.assert_error(outcome, "Vast.ai answered HTTP 401 to GET /api/v0/instances/: "
                                   "Invalid user key (check config.api_key or VAST_API_KEY)")


class AwsTest(RecordedTest):
    program = aws
    service = "aws"
    config = {"region": "us-east-1", "image_id": "ami-0123456789abcdef0",
              "instance_types": ["g5.xlarge", "p4d.24xlarge", "c7i.2xlarge"],
              "on_demand_prices": {"g5.xlarge": 1.006, "c7i.2xlarge": 0.357},
              "subnet_id": "subnet-0abc1234", "security_group_ids": ["sg-0123abcd"],
              "agent_bundle_url": BUNDLE}

    def run_recorded(self, name, op, req):
        steps = [(s["argv"], result(s["stdout"] if isinstance(s["stdout"], str)
                                    else json.dumps(s["stdout"]), s["returncode"], s["stderr"]))
                 for s in self.scenario(name)]
        runner = FakeRunner(self, steps)
        outcome = run_op(aws, op, req, context(self, runner=runner))
        runner.done()
        self.assertNotIn(TOKEN, outcome.stdout + outcome.stderr)
        for call in runner.calls:
            self.assertNotIn(TOKEN, " ".join(call["argv"]))
        return outcome, runner

    def test_offers_are_the_configured_types_at_spot_and_on_demand_prices(self):
        outcome, _ = self.run_recorded("offers", "offers", request("offers", self.config))
        g5 = ("NVIDIA A10G", 1, 24.0, 4, 16.0)
        self.assert_ok(outcome, {"offers": [
            offer("g5.xlarge.ondemand", *g5, 1.006, False, "us-east-1", "g5.xlarge", 240,
                  disk_gib=250),
            offer("g5.xlarge.spot", *g5, 0.4021, True, "us-east-1", "g5.xlarge", 240,
                  disk_gib=250),
            offer("p4d.24xlarge.spot", "NVIDIA A100", 8, 40.0, 96, 1152.0, 11.5723, True,
                  "us-east-1", "p4d.24xlarge", 240, disk_gib=8000),
            offer("c7i.2xlarge.ondemand", "", 0, 0.0, 8, 16.0, 0.357, False, "us-east-1",
                  "c7i.2xlarge", 240),
        ]})

    def test_create_runs_a_spot_instance_whose_user_data_starts_the_agent(self):
        outcome, runner = self.run_recorded("create_spot", "create", create_request(
            self.config, "g5.xlarge.spot", spot=True, price_per_hour=0.4021))
        self.assert_ok(outcome, {"instance_id": "i-0f1e2d3c4b5a69788",
                                 "message": "instance i-0f1e2d3c4b5a69788 is pending"})
        argv = runner.calls[1]["argv"]
        user_data = argv[argv.index("--user-data") + 1]
        self.assertTrue(user_data.startswith("file:///"))
        script = runner.calls[1]["files"][user_data]
        self.assertIn("SCHED_TOKEN=%s; export SCHED_TOKEN" % TOKEN, script)
        self.assertIn("sched_fetch_agent %s" % shlex.quote(BUNDLE), script)
        self.assertIn("nohup " + AGENT_LINE % ("0.4021", "true"), script)
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)
        self.assertFalse(os.path.exists(user_data[len("file://"):]), "user-data file left")

    def test_create_again_returns_the_tagged_instance(self):
        outcome, _ = self.run_recorded("create_again", "create",
                                       create_request(self.config, "g5.xlarge.spot"))
        self.assert_ok(outcome, {"instance_id": "i-0f1e2d3c4b5a69788", "message":
                                 "instance i-0f1e2d3c4b5a69788 tagged sched-node=node-1 already "
                                 "exists"})

    def test_an_offer_outside_the_config_is_refused(self):
        outcome, _ = self.run_recorded("delete_by_name_none", "create",
                                       create_request(self.config, "m5.large.spot"))
        self.assertEqual(outcome.code, 1)
        self.assertIn("offer_id 'm5.large.spot' is not one of this provider's offers",
                      outcome.reply["error"])

    def test_instance_states_and_deletes(self):
        instance = "i-0f1e2d3c4b5a69788"
        cases = [
            ("status_running", "status", instance, "running", "instance %s is running"),
            ("status_spot_taken", "status", instance, "gone", "instance %s is terminated: "
             "Server.SpotInstanceTermination: Spot instance termination"),
            ("status_not_found", "status", instance, "gone", "no instance %s"),
            ("status_by_name_pending", "status", "", "pending", "instance %s is pending"),
            ("delete", "delete", instance, "deleting", "instance %s is shutting-down"),
            ("delete_again", "delete", instance, "gone", "instance %s is terminated"),
            ("delete_by_name_none", "delete", "", "gone", "no instance tagged sched-node=node-1"),
        ]
        for scenario, op, instance_id, state, message in cases:
            req = request(op, self.config, instance_id=instance_id, node_name="node-1")
            outcome, _ = self.run_recorded(scenario, op, req)
            self.assert_ok(outcome, {"state": state, "message": message.replace("%s", instance)})

    def test_a_cli_failure_is_exit_1_with_its_words_and_a_hint(self):
        outcome, _ = self.run_recorded("auth_failure", "create",
                                       create_request(self.config, "g5.xlarge.spot"))
        self.assert_error(outcome, "aws ec2 describe-instances failed (exit 254): An error "
                                   "occurred (AuthFailure) when calling the DescribeInstances "
                                   "operation: AWS was not able to validate the provided access "
                                   "credentials (check the aws CLI's credentials: aws "
                                   "configure, AWS_PROFILE or config.profile, and that they may "
                                   "call ec2 describe-instances)")


if __name__ == "__main__":
    unittest.main()
