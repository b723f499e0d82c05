"""The shared module of the provider programs (deploy/providers/sched_provider.py): requests and
offers checked with errors that name the field, the agent's one command line, the dispatcher."""
import io
import json
import subprocess
import unittest

from provider_testing import TOKEN, FakeTransport, agent, context, create_request, request, sp


def error_of(fn, *args):
    try:
        fn(*args)
    except sp.ProviderError as e:
        return str(e)
    raise AssertionError("no ProviderError from %s%r" % (fn.__name__, args))


def offer(**overrides):
    value = {"id": "rtx4090.1x", "gpu": "NVIDIA GeForce RTX 4090", "gpu_count": 1,
             "gpu_memory_gib": 24, "cpus": 16, "memory_gib": 62.5, "price_per_hour": 0.44,
             "spot": True, "region": "eu-1", "instance_type": "1x RTX 4090",
             "provisioning_seconds": 180}
    value.update(overrides)
    return value


class RequestTest(unittest.TestCase):
    def test_a_good_create_request_passes(self):
        req = create_request({}, "o1")
        self.assertIs(sp.check_request("create", req), req)

    def test_protocol_and_provider_are_required(self):
        req = request("offers")
        del req["protocol"]
        self.assertEqual(error_of(sp.check_request, "offers", req),
                         "protocol is missing from the request: this program speaks protocol 1")
        self.assertEqual(error_of(sp.check_request, "offers", dict(request("offers"),
                                                                      protocol=2)),
                         "protocol 2 is not spoken here: this program speaks protocol 1")
        self.assertIn("protocol true is not spoken",
                      error_of(sp.check_request, "offers", dict(request("offers"), protocol=True)))
        self.assertEqual(error_of(sp.check_request, "offers", dict(request("offers"), provider="")),
                         "provider: want the provider's name, got an empty string")

    def test_config_may_be_absent_but_must_be_an_object(self):
        req = request("offers")
        del req["config"]
        self.assertEqual(sp.check_request("offers", req)["config"], {})
        self.assertEqual(error_of(sp.check_request, "offers", dict(request("offers"), config=[])),
                         "config: want an object, got a list")

    def test_create_fields_are_named_when_wrong(self):
        cases = [
            ({"node_name": "Node_1"}, 'node_name: want 1 to 63 of a-z, 0-9, \'-\', got "Node_1"'),
            ({"node_name": "n" * 64}, "node_name: want 1 to 63 of a-z, 0-9, '-'"),
            ({"offer_id": 7}, "offer_id: want an offer id, got 7"),
        ]
        for change, message in cases:
            req = create_request({}, "o1")
            req.update(change)
            if "node_name" in change:
                req["agent"]["name"] = change["node_name"]
            self.assertIn(message, error_of(sp.check_request, "create", req))
        req = create_request({}, "o1")
        del req["agent"]
        self.assertEqual(error_of(sp.check_request, "create", req),
                         "agent is missing from the create request")

    def test_agent_fields_are_named_when_wrong(self):
        cases = [
            ({"name": "other"}, 'agent.name "other" differs from node_name "node-1"'),
            ({"server": "no-port"}, 'agent.server: want host:port, got "no-port"'),
            ({"ca_pin": "md5:00"}, 'agent.ca_pin: want "" or "sha256:<hex>", got "md5:00"'),
            ({"join_token": "nodot"}, "agent.join_token: want \"\" or \"<id>.<secret>\""),
            ({"provider": "Vast AI"}, "agent.provider: want 1 to 63 of a-z, 0-9"),
            ({"price_per_hour": -1}, "agent.price_per_hour: want a number at least 0 and at "
                                     "most 10000, got -1"),
            ({"price_per_hour": "1"}, 'agent.price_per_hour: want a number, got "1"'),
            ({"spot": "yes"}, 'agent.spot: want true or false, got "yes"'),
            ({"region": "x" * 64}, "agent.region: want at most 63 printable characters"),
            ({"labels": {"a,b": "c"}}, 'agent.labels["a,b"]: a label key must be non-empty'),
            ({"labels": {"a": "b,c"}}, 'agent.labels["a"]: a label value must hold no \',\''),
            ({"labels": {"a": 1}}, 'agent.labels["a"]: want a string, got 1'),
        ]
        for change, message in cases:
            req = create_request({}, "o1", **change)
            self.assertIn(message, error_of(sp.check_request, "create", req), change)
        req = create_request({}, "o1")
        del req["agent"]["spot"]
        self.assertEqual(error_of(sp.check_request, "create", req),
                         "agent.spot is missing from the create request")

    def test_a_malformed_token_is_not_repeated_in_the_error(self):
        message = error_of(sp.check_request, "create", create_request({}, "o1",
                                                                      join_token="nodotsecret"))
        self.assertEqual(message, 'agent.join_token: want "" or "<id>.<secret>", got a string '
                                  'that is not shown')

    def test_status_and_delete_need_instance_id_and_node_name(self):
        for op in ("status", "delete"):
            self.assertEqual(error_of(sp.check_request, op, request(op, node_name="n")),
                             "instance_id is missing from the %s request" % op)
            req = request(op, instance_id="", node_name="n")
            self.assertIs(sp.check_request(op, req), req)  # "" when the create never answered
            self.assertIn("instance_id: want a string, got null",
                          error_of(sp.check_request, op, request(op, instance_id=None,
                                                                 node_name="n")))

    def test_stdin_must_hold_a_json_object(self):
        self.assertEqual(error_of(sp.parse_request, "offers", "  \n"),
                         "no request on stdin: the program wants one JSON object")
        self.assertIn("the request on stdin is not JSON",
                      error_of(sp.parse_request, "offers", "{protocol: 1}"))
        self.assertEqual(error_of(sp.parse_request, "offers", "[1]"),
                         "the request: want an object, got a list")


class OfferTest(unittest.TestCase):
    def test_an_offer_keeps_only_the_protocols_fields(self):
        checked = sp.check_offer(offer(behavior="never-joins", available=3, disk_gib=100))
        self.assertEqual(checked, dict(offer(), available=3, disk_gib=100))

    def test_offer_fields_are_named_when_wrong(self):
        cases = [
            ({"cpus": None}, "offer.cpus is missing"),
            ({"id": "has space"}, 'offer.id: want 1 to 128 of A-Z, a-z, 0-9, \'.\', \'_\', \':\', '
                                  '\'-\', got "has space"'),
            ({"id": "x" * 129}, "offer.id: want 1 to 128"),
            ({"gpu": ""}, "offer.gpu: an offer with GPUs names their model"),
            ({"gpu_count": 0}, 'offer.gpu_count: 0 with gpu "NVIDIA GeForce RTX 4090"'),
            ({"gpu_count": 1.5}, "offer.gpu_count: want a whole number, got 1.5"),
            ({"cpus": 0}, "offer.cpus: want a number more than 0, got 0"),
            ({"price_per_hour": float("nan")}, "offer.price_per_hour: want a number, got NaN"),
            ({"price_per_hour": 20000}, "offer.price_per_hour: want a number at least 0 and at "
                                        "most 10000, got 20000"),
            ({"spot": 1}, "offer.spot: want true or false, got 1"),
            ({"available": -1}, "offer.available: want a whole number at least 0, got -1"),
        ]
        for change, message in cases:
            self.assertIn(message, error_of(sp.check_offer, offer(**change)), change)

    def test_offer_ids_are_unique(self):
        self.assertEqual(error_of(sp.check_offers, [offer(), offer()]),
                         'offers[1].id "rtx4090.1x" is also offers[0].id: offer ids are unique')
        self.assertIn("offers[1].cpus is missing",
                      error_of(sp.check_offers, [offer(), offer(id="b", cpus=None)]))

    def test_an_unknown_offer_id_lists_the_known_ones(self):
        self.assertEqual(error_of(sp.find_offer, [offer()], "gone"),
                         'offer_id "gone" is not among this provider\'s offers now (rtx4090.1x); '
                         "ask for offers again")

    def test_id_part_keeps_ids_legal(self):
        self.assertEqual(sp.id_part("NVIDIA A100 80GB PCIe"), "NVIDIA_A100_80GB_PCIe")
        self.assertEqual(sp.id_part("a/b::c"), "a_b_c")


class AgentCommandLineTest(unittest.TestCase):
    def test_argv_carries_every_field_but_the_token(self):
        argv = sp.agent_argv(agent(), "/opt/sched/bin/sched-agent")
        self.assertEqual(argv, [
            "/opt/sched/bin/sched-agent", "--server=sched.example.org:7070", "--name=node-1",
            "--ca_pin=sha256:0f1e2d3c4b5a", "--provider=test", "--price_per_hour=0.5",
            "--spot=false", "--region=lab-1", "--instance_type=test-type",
            "--labels=pool=dev,team=ml"])
        self.assertNotIn(TOKEN, " ".join(argv))
        self.assertNotIn(TOKEN.split(".")[1], " ".join(argv))

    def test_empty_optional_fields_give_no_flag(self):
        argv = sp.agent_argv(agent(ca_pin="", region="", instance_type="", labels={},
                                   spot=True, price_per_hour=3, join_token=""))
        self.assertEqual(argv, ["sched-agent", "--server=sched.example.org:7070",
                                "--name=node-1", "--provider=test", "--price_per_hour=3",
                                "--spot=true"])

    def test_the_token_goes_in_the_environment(self):
        self.assertEqual(sp.agent_env(agent()), {"SCHED_TOKEN": TOKEN})
        self.assertEqual(sp.agent_env(agent(join_token="")), {})

    def test_schedds_own_token_is_not_handed_on(self):
        env = sp.child_env(agent(join_token=""), {"PATH": "/bin", "SCHED_TOKEN": "admin.x",
                                                  "SCHED_TOKEN_FILE": "/root/admin"})
        self.assertEqual(env, {"PATH": "/bin"})
        self.assertEqual(sp.child_env(agent(), {"SCHED_TOKEN": "admin.x"}),
                         {"SCHED_TOKEN": TOKEN})

    def test_advertised_gpus_in_the_agents_syntax(self):
        self.assertEqual(sp.advertise_gpus(2, "NVIDIA GeForce RTX 4090", 24),
                         "2x NVIDIA GeForce RTX 4090:24GB")
        self.assertEqual(sp.advertise_gpus(1, "NVIDIA A100-SXM4-80GB", 79.5),
                         "1x NVIDIA A100-SXM4-80GB:79.5GB")
        self.assertIn("holds a ','", error_of(sp.advertise_gpus, 1, "a,b", 8))
        self.assertIn("has no memory size", error_of(sp.advertise_gpus, 1, "x", 0))


class BootstrapTest(unittest.TestCase):
    def test_the_script_installs_and_execs_the_agent(self):
        config = sp.Config({"agent_bundle_url": "https://example.org/sched agent.tar.gz"})
        script = sp.bootstrap_script(config, agent(), ["--gpu_detection=auto"], background=False)
        self.assertIn("sched_fetch_agent 'https://example.org/sched agent.tar.gz'", script)
        self.assertTrue(script.rstrip().endswith(
            "exec sched-agent --server=sched.example.org:7070 --name=node-1 "
            "--ca_pin=sha256:0f1e2d3c4b5a --provider=test --price_per_hour=0.5 --spot=false "
            "--region=lab-1 --instance_type=test-type --labels=pool=dev,team=ml "
            "--work_dir=/var/lib/sched-agent --gpu_detection=auto"), script)
        self.assertNotIn(TOKEN, script)
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)

    def test_the_token_is_in_the_script_only_when_asked(self):
        config = sp.Config({"agent_install": "", "work_dir": "/srv/a b"})
        script = sp.bootstrap_script(config, agent(), [], background=True, token_in_script=True)
        self.assertIn("SCHED_TOKEN=%s; export SCHED_TOKEN" % TOKEN, script)
        self.assertIn("nohup sched-agent ", script)
        self.assertIn(">>'/srv/a b/agent.log' 2>&1 </dev/null &", script)
        self.assertEqual(script.count(TOKEN), 1)
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)

    def test_no_way_to_install_the_agent_is_an_error(self):
        self.assertIn("config.agent_bundle_url or config.agent_install is required",
                      error_of(sp.bootstrap_script, sp.Config({}), agent(), [], False))


class ConfigTest(unittest.TestCase):
    def test_typed_reads_name_the_key(self):
        config = sp.Config({"n": "3", "l": ["a", 2], "b": "yes"})
        self.assertEqual(error_of(config.number, "n"), 'config.n: want a number, got "3"')
        self.assertEqual(error_of(config.str_list, "l"), "config.l[1]: want a string, got 2")
        self.assertEqual(error_of(config.bool, "b"), 'config.b: want true or false, got "yes"')
        self.assertEqual(config.number("missing", 7), 7)

    def test_a_secret_comes_from_config_or_the_environment(self):
        self.assertEqual(sp.Config({"api_key": "k"}).secret("api_key", "X_KEY", {}, "X"), "k")
        self.assertEqual(sp.Config({}).secret("api_key", "X_KEY", {"X_KEY": "e"}, "X"), "e")
        self.assertEqual(error_of(sp.Config({}).secret, "api_key", "X_KEY", {}, "X"),
                         "no X API key: set config.api_key or the environment variable X_KEY "
                         "for schedd")


class HttpTest(unittest.TestCase):
    def exchange(self, status, body):
        transport = FakeTransport(self, [{
            "request": {"method": "GET", "url": "https://api.example/v0/things/?x=1",
                        "headers": {"Authorization": "Bearer k"}},
            "response": {"status": status, "json": body}}])
        return sp.http_json(context(self, transport), "GET", "https://api.example/v0/things/?x=1",
                            headers={"Authorization": "Bearer k"}, service="Example",
                            auth_hint="check config.api_key")

    def test_json_comes_back(self):
        self.assertEqual(self.exchange(200, {"ok": 1}), {"ok": 1})

    def test_an_error_status_names_service_status_and_what_it_said(self):
        self.assertEqual(error_of(self.exchange, 401, {"error": "invalid_api_key"}),
                         "Example answered HTTP 401 to GET /v0/things/: invalid_api_key "
                         "(check config.api_key)")
        self.assertEqual(error_of(self.exchange, 500, None),
                         "Example answered HTTP 500 to GET /v0/things/: null")


def handlers(reply=None, error=None):
    def handle(req, ctx):
        if error:
            raise error
        return reply
    return {op: handle for op in sp.OPS}


class DispatcherTest(unittest.TestCase):
    def run_op(self, hs, argv, req):
        stdout, stderr = io.StringIO(), io.StringIO()
        code = sp.run(hs, argv, io.StringIO(json.dumps(req)), stdout, stderr, context(self))
        return code, json.loads(stdout.getvalue()), stderr.getvalue()

    def test_a_wrong_op_is_a_usage_error(self):
        code, reply, stderr = self.run_op(handlers({}), ["prog", "launch"], request("offers"))
        self.assertEqual(code, 2)
        self.assertEqual(reply, {"error": "usage: prog OP, OP one of offers, create, status, "
                                          "delete; got launch"})

    def test_a_provider_error_is_exit_1_and_its_message(self):
        code, reply, stderr = self.run_op(handlers(error=sp.ProviderError("quota reached")),
                                          ["prog", "offers"], request("offers"))
        self.assertEqual((code, reply), (1, {"error": "quota reached"}))
        self.assertIn("prog offers: quota reached", stderr)

    def test_a_bug_is_exit_1_with_the_traceback_on_stderr(self):
        code, reply, stderr = self.run_op(handlers(error=KeyError("id")), ["prog", "status"],
                                          request("status", instance_id="", node_name="n"))
        self.assertEqual(code, 1)
        self.assertEqual(reply, {"error": "prog status failed inside the program (KeyError: "
                                          "'id'); its stderr has the traceback"})
        self.assertIn("Traceback", stderr)

    def test_replies_are_checked_against_the_protocol(self):
        code, reply, _ = self.run_op(handlers({"state": "up"}), ["prog", "status"],
                                     request("status", instance_id="i", node_name="n"))
        self.assertEqual((code, reply), (1, {"error": 'state: want pending or running or gone '
                                                      'or failed, got "up"'}))
        code, reply, _ = self.run_op(handlers({"state": "running"}), ["prog", "delete"],
                                     request("delete", instance_id="i", node_name="n"))
        self.assertEqual((code, reply), (1, {"error": 'state: want gone or deleting, got '
                                                      '"running"'}))
        code, reply, _ = self.run_op(handlers({"state": "gone"}), ["prog", "delete"],
                                     request("delete", instance_id="i", node_name="n"))
        self.assertEqual((code, reply), (0, {"state": "gone", "message": ""}))

    def test_offers_replies_are_normalised(self):
        code, reply, _ = self.run_op(handlers({"offers": [offer(behavior="x")]}),
                                     ["prog", "offers"], request("offers"))
        self.assertEqual((code, reply), (0, {"offers": [offer()]}))

    def test_a_bad_request_never_reaches_the_handler(self):
        code, reply, _ = self.run_op(handlers(error=AssertionError("called")),
                                     ["prog", "create"], create_request({}, "o", spot=None))
        self.assertEqual((code, reply), (1, {"error": "agent.spot: want true or false, got "
                                                      "null"}))


if __name__ == "__main__":
    unittest.main()
