"""What every sched provider program shares: the protocol of docs/providers.md.

schedd's autoscaler runs `PROGRAM OP` (offers, create, status or delete) with one JSON request on
stdin and reads one JSON object from stdout. A program hands its handlers to run(), which reads
and checks the request, calls the handler for OP, checks the reply and writes it; a handler that
raises ProviderError makes the program print {"error": message} and exit 1.

The outside world (HTTP, commands, the clock, sleeping, the environment) reaches handlers only
through a Context, so tests replace it with recorded answers and a fake clock.

Standard library only: the programs run wherever python3 does.
"""

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request

PROTOCOL = 1
OPS = ("offers", "create", "status", "delete")
STATUS_STATES = ("pending", "running", "gone", "failed")
DELETE_STATES = ("gone", "deleting")

NODE_NAME = re.compile(r"[a-z0-9-]{1,63}")
OFFER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# What sched-agent accepts for --provider.
AGENT_PROVIDER = re.compile(r"[a-z0-9._-]{1,63}")
# sched-agent refuses a price per hour above this.
MAX_PRICE_PER_HOUR = 10000.0
MAX_GPUS = 64
# sched-agent's limit for --region and --instance_type.
MAX_TEXT = 63

TOKEN_ENV = "SCHED_TOKEN"
# Variables that carry a token of schedd's own; never handed on to an agent.
INHERITED_SECRETS = ("SCHED_TOKEN", "SCHED_TOKEN_FILE")


class ProviderError(Exception):
    """A failure a person can act on; its text goes to schedd as {"error": text}."""


# ---------------------------------------------------------------------------------------------
# Checking values. `where` names the field the way a person would find it: "config.offers[1].cpus".


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _bad(where, want, value, secret=False):
    if secret:
        shown = "%s that is not shown" % _kind(value)
    elif isinstance(value, (dict, list)):
        shown = _kind(value)
    else:
        shown = json.dumps(value)
        shown = shown if len(shown) <= 100 else shown[:96] + "...\""
    return ProviderError("%s: want %s, got %s" % (where, want, shown))


def need_str(value, where, pattern=None, want="a string", allow_empty=True, secret=False):
    """A string (matching `pattern`); `secret`: the error does not show the value."""
    if not isinstance(value, str):
        raise _bad(where, want, value, secret)
    if not allow_empty and value == "":
        raise ProviderError("%s: want %s, got an empty string" % (where, want))
    if pattern is not None and not pattern.fullmatch(value):
        raise _bad(where, want, value, secret)
    return value


def need_number(value, where, minimum=0.0, maximum=None, above_minimum=False):
    """A finite JSON number in [minimum, maximum] (or above minimum); bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(where, "a number", value)
    too_small = value <= minimum if above_minimum else value < minimum
    if too_small or (maximum is not None and value > maximum):
        span = "%s %s" % ("more than" if above_minimum else "at least", format_number(minimum))
        if maximum is not None:
            span += " and at most %s" % format_number(maximum)
        raise _bad(where, "a number " + span, value)
    return value


def need_int(value, where, minimum=0, maximum=None):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "a whole number", value)
    if value < minimum or (maximum is not None and value > maximum):
        span = "at least %d" % minimum + ("" if maximum is None else " and at most %d" % maximum)
        raise _bad(where, "a whole number " + span, value)
    return value


def need_bool(value, where):
    if not isinstance(value, bool):
        raise _bad(where, "true or false", value)
    return value


def need_object(value, where):
    if not isinstance(value, dict):
        raise _bad(where, "an object", value)
    return value


def need_str_list(value, where):
    if not isinstance(value, list):
        raise _bad(where, "a list of strings", value)
    for i, item in enumerate(value):
        need_str(item, "%s[%d]" % (where, i))
    return list(value)


def format_number(x):
    """A number as a flag value: 3 rather than 3.0, 0.45 as 0.45."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


# ---------------------------------------------------------------------------------------------
# Config: the provider's `config:` section of schedd's autoscale YAML, as JSON.


class Config:
    """Typed reads of the config object, with errors that name config.KEY."""

    def __init__(self, values):
        self.values = values

    def has(self, key):
        return key in self.values and self.values[key] is not None

    def where(self, key):
        return "config." + key

    def str(self, key, default=None, required=False, why=""):
        if not self.has(key) or (required and self.values[key] == ""):
            if required:
                raise ProviderError("config.%s is required%s" % (key, (": " + why) if why else ""))
            return default
        return need_str(self.values[key], self.where(key))

    def number(self, key, default=None, minimum=0.0, maximum=None):
        if not self.has(key):
            return default
        return need_number(self.values[key], self.where(key), minimum, maximum)

    def int(self, key, default=None, minimum=0, maximum=None):
        if not self.has(key):
            return default
        return need_int(self.values[key], self.where(key), minimum, maximum)

    def bool(self, key, default=False):
        if not self.has(key):
            return default
        return need_bool(self.values[key], self.where(key))

    def str_list(self, key, default=None):
        if not self.has(key):
            return list(default or [])
        return need_str_list(self.values[key], self.where(key))

    def object(self, key, default=None):
        if not self.has(key):
            return dict(default or {})
        return need_object(self.values[key], self.where(key))

    def list(self, key, default=None):
        if not self.has(key):
            return list(default or [])
        value = self.values[key]
        if not isinstance(value, list):
            raise _bad(self.where(key), "a list", value)
        return value

    def secret(self, key, env_name, environ, service):
        """A credential from config.KEY, else $ENV_NAME; the error says where to put it."""
        value = self.str(key)
        if value:
            return value
        value = environ.get(env_name, "")
        if value:
            return value
        raise ProviderError("no %s API key: set config.%s or the environment variable %s for "
                            "schedd" % (service, key, env_name))


# ---------------------------------------------------------------------------------------------
# Requests.


def _check_agent(agent, node_name):
    where = "agent"
    need_object(agent, where)
    for key in ("server", "name", "ca_pin", "join_token", "provider", "price_per_hour", "spot",
                "region", "instance_type", "labels"):
        if key not in agent:
            raise ProviderError("agent.%s is missing from the create request" % key)
    need_str(agent["server"], "agent.server", re.compile(r"\S+:\d+"), "host:port")
    need_str(agent["name"], "agent.name")
    if agent["name"] != node_name:
        raise ProviderError("agent.name %s differs from node_name %s: the agent must register "
                            "under the node's name" % (json.dumps(agent["name"]),
                                                       json.dumps(node_name)))
    need_str(agent["ca_pin"], "agent.ca_pin", re.compile(r"(sha256:[0-9A-Fa-f]+)?"),
             '"" or "sha256:<hex>"')
    need_str(agent["join_token"], "agent.join_token", re.compile(r"([^.\s]+\.\S+)?"),
             '"" or "<id>.<secret>"', secret=True)
    need_str(agent["provider"], "agent.provider", AGENT_PROVIDER,
             "1 to 63 of a-z, 0-9, '.', '_', '-'")
    need_number(agent["price_per_hour"], "agent.price_per_hour", 0, MAX_PRICE_PER_HOUR)
    need_bool(agent["spot"], "agent.spot")
    printable = re.compile(r"[ -~]{0,%d}" % MAX_TEXT)
    need_str(agent["region"], "agent.region", printable, "at most 63 printable characters")
    need_str(agent["instance_type"], "agent.instance_type", printable,
             "at most 63 printable characters")
    labels = need_object(agent["labels"], "agent.labels")
    for key, value in labels.items():
        where = "agent.labels[%s]" % json.dumps(key)
        if not key.strip() or "," in key or "=" in key or key != key.strip():
            raise ProviderError("%s: a label key must be non-empty, without ',' or '=' and "
                                "without surrounding spaces" % where)
        need_str(value, where)
        if "," in value or value != value.strip():
            raise ProviderError("%s: a label value must hold no ',' and no surrounding spaces"
                                % where)
    return agent


def check_request(op, request):
    """Checks what every request and OP's request must hold; returns the request."""
    need_object(request, "the request")
    if "protocol" not in request:
        raise ProviderError("protocol is missing from the request: this program speaks "
                            "protocol %d" % PROTOCOL)
    if request["protocol"] != PROTOCOL or isinstance(request["protocol"], bool):
        raise ProviderError("protocol %s is not spoken here: this program speaks protocol %d"
                            % (json.dumps(request["protocol"]), PROTOCOL))
    if "provider" not in request:
        raise ProviderError("provider is missing from the request")
    need_str(request["provider"], "provider", allow_empty=False, want="the provider's name")
    if request.get("config") is None:
        request["config"] = {}
    need_object(request["config"], "config")
    if op == "create":
        for key in ("offer_id", "node_name", "agent"):
            if key not in request:
                raise ProviderError("%s is missing from the create request" % key)
        need_str(request["offer_id"], "offer_id", allow_empty=False, want="an offer id")
        need_str(request["node_name"], "node_name", NODE_NAME, "1 to 63 of a-z, 0-9, '-'")
        _check_agent(request["agent"], request["node_name"])
    elif op in ("status", "delete"):
        for key in ("instance_id", "node_name"):
            if key not in request:
                raise ProviderError("%s is missing from the %s request" % (key, op))
        need_str(request["instance_id"], "instance_id")
        need_str(request["node_name"], "node_name", NODE_NAME, "1 to 63 of a-z, 0-9, '-'")
    return request


def parse_request(op, text):
    if not text.strip():
        raise ProviderError("no request on stdin: the program wants one JSON object")
    try:
        request = json.loads(text)
    except ValueError as e:
        raise ProviderError("the request on stdin is not JSON: %s" % e) from None
    return check_request(op, request)


# ---------------------------------------------------------------------------------------------
# Offers.

_OFFER_NUMBERS = (
    # key, minimum, maximum, required
    ("gpu_memory_gib", 0, 1 << 20, True),
    ("cpus", 0, 1 << 20, True),
    ("memory_gib", 0, 1 << 30, True),
    ("disk_gib", 0, 1 << 40, False),
    ("price_per_hour", 0, MAX_PRICE_PER_HOUR, True),
    ("provisioning_seconds", 0, 7 * 24 * 3600, True),
)


def check_offer(offer, where="offer"):
    """The offer with only the protocol's fields, each checked; raises naming the field."""
    need_object(offer, where)
    for key in ("id", "gpu", "gpu_count", "gpu_memory_gib", "cpus", "memory_gib",
                "price_per_hour", "spot", "region", "instance_type", "provisioning_seconds"):
        if offer.get(key) is None:
            raise ProviderError("%s.%s is missing" % (where, key))
    out = {}
    out["id"] = need_str(offer["id"], where + ".id", OFFER_ID,
                         "1 to 128 of A-Z, a-z, 0-9, '.', '_', ':', '-'")
    out["gpu"] = need_str(offer["gpu"], where + ".gpu")
    out["gpu_count"] = need_int(offer["gpu_count"], where + ".gpu_count", 0, MAX_GPUS)
    if out["gpu_count"] > 0 and not out["gpu"].strip():
        raise ProviderError("%s.gpu: an offer with GPUs names their model" % where)
    if out["gpu_count"] == 0 and out["gpu"]:
        raise ProviderError("%s.gpu_count: 0 with gpu %s; give the count, or gpu \"\" for no GPU"
                            % (where, json.dumps(out["gpu"])))
    for key, lo, hi, required in _OFFER_NUMBERS:
        if offer.get(key) is None and not required:
            continue
        out[key] = need_number(offer[key], "%s.%s" % (where, key), lo, hi)
    if out["cpus"] <= 0:
        raise _bad(where + ".cpus", "a number more than 0", offer["cpus"])
    if out["memory_gib"] <= 0:
        raise _bad(where + ".memory_gib", "a number more than 0", offer["memory_gib"])
    out["spot"] = need_bool(offer["spot"], where + ".spot")
    printable = re.compile(r"[ -~]{0,%d}" % MAX_TEXT)
    out["region"] = need_str(offer["region"], where + ".region", printable,
                             "at most 63 printable characters")
    out["instance_type"] = need_str(offer["instance_type"], where + ".instance_type", printable,
                                    "at most 63 printable characters")
    if offer.get("available") is not None:
        out["available"] = need_int(offer["available"], where + ".available", 0)
    return out


def check_offers(offers, where="offers"):
    if not isinstance(offers, list):
        raise _bad(where, "a list of offers", offers)
    checked = [check_offer(o, "%s[%d]" % (where, i)) for i, o in enumerate(offers)]
    seen = {}
    for i, offer in enumerate(checked):
        if offer["id"] in seen:
            raise ProviderError("%s[%d].id %s is also %s[%d].id: offer ids are unique"
                                % (where, i, json.dumps(offer["id"]), where, seen[offer["id"]]))
        seen[offer["id"]] = i
    return checked


def printable(text, limit=MAX_TEXT):
    """Text fit for an offer's region or instance_type (the agent takes ASCII, one line)."""
    return re.sub(r"[^ -~]", "?", text)[:limit]


def id_part(text):
    """Text made fit for an offer id: runs of other characters become one '_'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_") or "_"


def find_offer(offers, offer_id):
    for offer in offers:
        if offer["id"] == offer_id:
            return offer
    known = ", ".join(o["id"] for o in offers[:20]) or "none"
    raise ProviderError("offer_id %s is not among this provider's offers now (%s); ask for "
                        "offers again" % (json.dumps(offer_id), known))


# ---------------------------------------------------------------------------------------------
# The agent's command line and environment: the one place they are built.


def agent_argv(agent, binary="sched-agent"):
    """sched-agent's argv for a create request's `agent`. The join token is never in it: it
    travels in the environment (agent_env)."""
    argv = [binary, "--server=" + agent["server"], "--name=" + agent["name"]]
    if agent.get("ca_pin"):
        argv.append("--ca_pin=" + agent["ca_pin"])
    argv.append("--provider=" + agent["provider"])
    argv.append("--price_per_hour=" + format_number(agent["price_per_hour"]))
    argv.append("--spot=" + ("true" if agent["spot"] else "false"))
    if agent.get("region"):
        argv.append("--region=" + agent["region"])
    if agent.get("instance_type"):
        argv.append("--instance_type=" + agent["instance_type"])
    labels = agent.get("labels") or {}
    if labels:
        argv.append("--labels=" + ",".join("%s=%s" % (k, labels[k]) for k in sorted(labels)))
    return argv


def agent_env(agent):
    """The environment variables the agent needs besides its flags: the join token, if any."""
    token = agent.get("join_token") or ""
    return {TOKEN_ENV: token} if token else {}


def child_env(agent, base):
    """`base` (this program's environment) without schedd's own token, plus agent_env."""
    env = {k: v for k, v in base.items() if k not in INHERITED_SECRETS}
    env.update(agent_env(agent))
    return env


def advertise_gpus(count, model, memory_gib):
    """--advertise_gpus text, "COUNTx MODEL:MEMORY": "2x NVIDIA GeForce RTX 4090:24GB"."""
    if "," in model:
        raise ProviderError("GPU model %s holds a ',', which --advertise_gpus cannot carry"
                            % json.dumps(model))
    if memory_gib <= 0:
        raise ProviderError("GPU model %s has no memory size (gpu_memory_gib): the agent "
                            "advertises GPUs with their memory" % json.dumps(model))
    memory = "%sGB" % format_number(memory_gib)
    return "%dx %s:%s" % (count, model, memory)


# ---------------------------------------------------------------------------------------------
# Starting the agent on a rented machine: a shell script run as root at boot (AWS user-data,
# Vast.ai onstart) or as the container's command (RunPod).

DEFAULT_IMAGE = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
DEFAULT_REMOTE_WORK_DIR = "/var/lib/sched-agent"
AGENT_PREFIX = "/opt/sched"

# Fetches config.agent_bundle_url ($1): a .tar.gz holding sched-agent somewhere inside it, or the
# binary itself, and puts sched-agent in /opt/sched/bin. curl or wget, installed with apt-get when
# the image has neither (CUDA runtime images don't).
_FETCH_BUNDLE = r"""sched_fetch_agent() {
  url=$1
  command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates; }
  mkdir -p /opt/sched/bin /opt/sched/bundle
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 5 -o /opt/sched/bundle.download "$url"
  else
    wget -q -O /opt/sched/bundle.download "$url"
  fi
  case "$url" in
    *.tar.gz|*.tgz)
      tar -xzf /opt/sched/bundle.download -C /opt/sched/bundle
      found=$(find /opt/sched/bundle -type f -name sched-agent | head -n 1)
      [ -n "$found" ] || { echo "no sched-agent in $url" >&2; exit 1; }
      ln -sf "$found" /opt/sched/bin/sched-agent ;;
    *) mv /opt/sched/bundle.download /opt/sched/bin/sched-agent ;;
  esac
  chmod 0755 /opt/sched/bin/sched-agent
}"""


def install_snippet(config):
    """The shell that puts sched-agent on the box: config.agent_install verbatim when given
    ("" when the image already has it), else a download of config.agent_bundle_url."""
    if config.has("agent_install"):
        return config.str("agent_install")
    url = config.str("agent_bundle_url")
    if not url:
        raise ProviderError(
            "config.agent_bundle_url or config.agent_install is required to put sched-agent on "
            "the rented machine: give the URL of an agent bundle (.tar.gz, or the binary), a "
            "shell snippet that installs it, or agent_install: \"\" when the image has it")
    return "%s\nsched_fetch_agent %s" % (_FETCH_BUNDLE, shlex.quote(url))


def bootstrap_script(config, agent, extra_args, background, token_in_script=False):
    """A POSIX shell script that installs and starts sched-agent.

    background: start it with nohup and return (boot scripts); else exec it (a container's main
    process). token_in_script: export SCHED_TOKEN in the script itself (AWS user-data, which has
    no separate environment); otherwise the caller hands the token to the service's env field."""
    binary = config.str("agent", "sched-agent")
    work_dir = config.str("work_dir", DEFAULT_REMOTE_WORK_DIR)
    argv = agent_argv(agent, binary) + ["--work_dir=" + work_dir] + list(extra_args)
    argv += config.str_list("extra_agent_args")
    lines = ["#!/bin/sh", "set -eu"]
    if token_in_script:
        for name, value in sorted(agent_env(agent).items()):
            lines.append("%s=%s; export %s" % (name, shlex.quote(value), name))
    lines.append(install_snippet(config))
    lines.append("PATH=%s/bin:$PATH; export PATH" % AGENT_PREFIX)
    lines.append("mkdir -p %s" % shlex.quote(work_dir))
    command = shlex.join(argv)
    if background:
        log = shlex.quote(work_dir + "/agent.log")
        lines.append("nohup %s >>%s 2>&1 </dev/null &" % (command, log))
    else:
        lines.append("exec " + command)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The outside world.


class CommandResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class CommandNotFound(ProviderError):
    pass


def run_command(argv, env=None, timeout=30.0, input=None):
    """Runs argv to its end (killed after `timeout` s): no child outlives the program."""
    try:
        proc = subprocess.run(argv, env=env, input=input, capture_output=True, text=True,
                              timeout=timeout, stdin=None if input is not None else
                              subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandNotFound("%s: command not found on PATH" % argv[0]) from None
    except subprocess.TimeoutExpired:
        raise ProviderError("%s did not finish within %s s" % (argv[0], format_number(timeout))) \
            from None
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def urllib_transport(method, url, headers, body, timeout):
    """One HTTP exchange: (status, body bytes). HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError as e:
        raise ProviderError("cannot reach %s: %s" % (_origin(url), e.reason)) from None
    except (TimeoutError, OSError) as e:
        raise ProviderError("no answer from %s within %s s: %s"
                            % (_origin(url), format_number(timeout), e)) from None


def _origin(url):
    return re.sub(r"^(\w+://[^/?#]+).*$", r"\1", url)


class Context:
    """Everything a handler may touch outside the program. Tests pass their own."""

    def __init__(self, transport=None, runner=None, sleep=None, now=None, environ=None):
        self.transport = transport or urllib_transport
        self.runner = runner or run_command
        self.sleep = sleep or time.sleep
        self.now = now or time.time
        self.environ = os.environ if environ is None else environ
        self.stderr = sys.stderr  # run() points it at the program's stderr

    def log(self, message):
        """A line for the person reading schedd's log of the program's stderr. Never a secret."""
        self.stderr.write(message + "\n")


def http_request(ctx, method, url, body=None, headers=None, timeout=30.0):
    """Sends `body` as JSON; returns (status, parsed JSON or None, text). Never raises for an
    HTTP error status: the caller decides what a status means."""
    all_headers = {"Accept": "application/json", "User-Agent": "sched-provider"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    status, raw = ctx.transport(method, url, all_headers, data, timeout)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    return status, parsed, text


def http_error(service, method, url, status, parsed, text, auth_hint=""):
    detail = error_detail(parsed) or text.strip()[:300] or "no body"
    message = "%s answered HTTP %d to %s %s: %s" % (service, status, method, _path(url), detail)
    if status in (401, 403) and auth_hint:
        message += " (%s)" % auth_hint
    return ProviderError(message)


def http_json(ctx, method, url, body=None, headers=None, timeout=30.0, service="the API",
              auth_hint=""):
    """Sends JSON, returns the parsed JSON answer. An HTTP error raises a ProviderError naming
    the service, the status and what it said; 401/403 add `auth_hint`."""
    status, parsed, text = http_request(ctx, method, url, body, headers, timeout)
    if status >= 400:
        raise http_error(service, method, url, status, parsed, text, auth_hint)
    if parsed is None and text.strip():
        raise ProviderError("%s answered %s %s with something that is not JSON: %s"
                            % (service, method, _path(url), text.strip()[:200]))
    return parsed


def _path(url):
    return re.sub(r"^\w+://[^/]+", "", url).split("?")[0] or "/"


def error_detail(parsed):
    if isinstance(parsed, dict):
        for key in ("msg", "error", "message", "detail"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return parsed[key]
        errors = parsed.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", ""))
    return ""


# ---------------------------------------------------------------------------------------------
# The dispatcher.


def _check_reply(op, reply):
    need_object(reply, "the %s reply" % op)
    if op == "offers":
        reply = {"offers": check_offers(reply.get("offers"))}
    elif op == "create":
        need_str(reply.get("instance_id"), "instance_id", allow_empty=False,
                 want="the new instance's id")
        if "message" in reply:
            need_str(reply["message"], "message")
    else:
        states = STATUS_STATES if op == "status" else DELETE_STATES
        if reply.get("state") not in states:
            raise _bad("state", " or ".join(states), reply.get("state"))
        reply.setdefault("message", "")
        need_str(reply["message"], "message")
    return reply


def _write(stream, obj):
    stream.write(json.dumps(obj, sort_keys=True) + "\n")
    stream.flush()


def run(handlers, argv=None, stdin=None, stdout=None, stderr=None, ctx=None):
    """Runs one op: `handlers` maps op -> handler(request, ctx) -> reply. Returns the exit code
    (0, 1 on failure, 2 on a wrong command line) after writing the reply or {"error": ...}."""
    argv = sys.argv if argv is None else argv
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    ctx = ctx or Context()
    ctx.stderr = stderr
    program = os.path.basename(argv[0]) if argv else "provider"
    if len(argv) != 2 or argv[1] not in OPS or argv[1] not in handlers:
        got = " ".join(argv[1:]) or "nothing"
        message = "usage: %s OP, OP one of %s; got %s" % (program, ", ".join(OPS), got)
        stderr.write(message + "\n")
        _write(stdout, {"error": message})
        return 2
    op = argv[1]
    try:
        request = parse_request(op, stdin.read())
        reply = _check_reply(op, handlers[op](request, ctx))
    except ProviderError as e:
        stderr.write("%s %s: %s\n" % (program, op, e))
        _write(stdout, {"error": str(e)})
        return 1
    except Exception as e:  # a bug here; the person still gets a line, stderr the traceback
        traceback.print_exc(file=stderr)
        _write(stdout, {"error": "%s %s failed inside the program (%s: %s); its stderr has the "
                                 "traceback" % (program, op, type(e).__name__, e)})
        return 1
    _write(stdout, reply)
    return 0
