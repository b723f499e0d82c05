"""What the provider tests share: the programs loaded as modules, requests, and fakes of the
outside world (a clock, a command runner, an HTTP transport) that check what is asked of them."""
import copy
import importlib.machinery
import importlib.util
import io
import json
import os
import sys

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
PROVIDERS = os.path.normpath(os.path.join(HERE, "..", "..", "deploy", "providers"))
RECORDED = os.path.join(HERE, "recorded")
sys.path.insert(0, PROVIDERS)

import sched_provider as sp  # noqa: E402

TOKEN = "a1b2c3.s3cret-join-token"
ANY = "*"  # in an expected request: any value, which the test looks at itself


def program_path(name):
    return os.path.join(PROVIDERS, "sched-provider-" + name)


def load_program(name):
    """sched-provider-NAME as a module, to call its main() with fakes."""
    path = program_path(name)
    loader = importlib.machinery.SourceFileLoader("sched_provider_" + name, path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def agent(node_name="node-1", **overrides):
    value = {"server": "sched.example.org:7070", "name": node_name,
             "ca_pin": "sha256:0f1e2d3c4b5a", "join_token": TOKEN, "provider": "test",
             "price_per_hour": 0.5, "spot": False, "region": "lab-1",
             "instance_type": "test-type", "labels": {"team": "ml", "pool": "dev"}}
    value.update(overrides)
    return value


def request(op, config=None, provider="test", **fields):
    value = {"protocol": 1, "provider": provider, "config": config or {}}
    value.update(fields)
    return value


def create_request(config, offer_id, node_name="node-1", provider_name="test",
                   **agent_overrides):
    return request("create", config, provider_name, offer_id=offer_id, node_name=node_name,
                   agent=agent(node_name, **agent_overrides))


class Outcome:
    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.reply = json.loads(stdout) if stdout.strip() else None

    def __repr__(self):
        return "exit %d, stdout %s, stderr %s" % (self.code, self.stdout, self.stderr)


def run_op(module, op, req, ctx):
    """One op of a program's main() in this process, as schedd would run it."""
    stdout, stderr = io.StringIO(), io.StringIO()
    stdin = io.StringIO(json.dumps(req))
    code = module.main(["sched-provider-test", op], stdin, stdout, stderr, ctx)
    lines = [l for l in stdout.getvalue().splitlines() if l.strip()]
    assert len(lines) == 1, "want one JSON line on stdout, got %r" % stdout.getvalue()
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


class FakeClock:
    """now() and sleep(): sleeping moves the clock, nothing waits."""

    def __init__(self, start=1_700_000_000.0):
        self.time = start
        self.slept = []

    def now(self):
        return self.time

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.time += seconds


def result(stdout="", returncode=0, stderr=""):
    return sp.CommandResult(returncode, stdout, stderr)


def matches(expected, actual):
    if expected == ANY:
        return True
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(matches(expected[k], actual[k])
                                                        for k in expected)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(matches(e, a)
                                                    for e, a in zip(expected, actual))
    return expected == actual


class FakeRunner:
    """Answers commands from a script of (argv, result) in order; any argv that is not the next
    one expected fails the test. Notes each call's env and the text of file:// arguments."""

    def __init__(self, test, script):
        self.test = test
        self.script = list(script)
        self.calls = []

    def __call__(self, argv, env=None, timeout=None, input=None):
        files = {}
        for arg in argv:
            if arg.startswith("file://"):
                with open(arg[len("file://"):]) as f:
                    files[arg] = f.read()
        self.calls.append({"argv": list(argv), "env": env, "files": files, "timeout": timeout})
        self.test.assertTrue(self.script, "unexpected command %r" % (argv,))
        expected, answer = self.script.pop(0)
        self.test.assertTrue(matches(expected, list(argv)),
                             "command\n  %r\nwanted\n  %r" % (argv, expected))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def done(self):
        self.test.assertEqual(self.script, [], "commands expected but not run")


class FakeTransport:
    """Answers HTTP exchanges from a script of (expected request, response) in order.

    An expected request is {"method", "url", "headers" (a subset to find), and "json" or
    "graphql" ({operationName, variables}; the query must start with its operation)}; a response
    is {"status", "json"}."""

    def __init__(self, test, exchanges):
        self.test = test
        self.script = copy.deepcopy(list(exchanges))
        self.requests = []

    def __call__(self, method, url, headers, body, timeout):
        sent = json.loads(body) if body else None
        self.requests.append({"method": method, "url": url, "headers": headers, "json": sent})
        self.test.assertTrue(self.script, "unexpected request %s %s" % (method, url))
        exchange = self.script.pop(0)
        want = exchange["request"]
        self.test.assertEqual((method, url), (want["method"], want["url"]))
        for name, value in want.get("headers", {}).items():
            self.test.assertEqual(headers.get(name), value, "header " + name)
        if "graphql" in want:
            graphql = want["graphql"]
            self.test.assertEqual(sent["operationName"], graphql["operationName"])
            self.test.assertRegex(sent["query"].lstrip(),
                                  r"^(query|mutation) %s\b" % graphql["operationName"])
            self.test.assertTrue(matches(graphql["variables"], sent["variables"]),
                                 "variables\n  %s\nwanted\n  %s"
                                 % (json.dumps(sent["variables"]),
                                    json.dumps(graphql["variables"])))
        elif "json" in want:
            self.test.assertTrue(matches(want["json"], sent), "body\n  %s\nwanted\n  %s"
                                 % (json.dumps(sent), json.dumps(want["json"])))
        else:
            self.test.assertIsNone(sent)
        response = exchange["response"]
        return response["status"], json.dumps(response.get("json")).encode()

    def done(self):
        self.test.assertEqual(self.script, [], "requests expected but not sent")


def recorded(name):
    with open(os.path.join(RECORDED, name + ".json")) as f:
        return json.load(f)


def context(test, transport=None, runner=None, environ=None, clock=None):
    clock = clock or FakeClock()
    return sp.Context(transport=transport or FakeTransport(test, []),
                      runner=runner or FakeRunner(test, []), sleep=clock.sleep, now=clock.now,
                      environ=environ if environ is not None else {})
