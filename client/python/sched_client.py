#!/usr/bin/env python3
"""A small Python client of schedd's gRPC API (proto/sched/v1), on stubs made by generate.sh.

As a library:

    import sched_client
    with sched_client.Client("127.0.0.1:7070", token=..., ca_file=...) as c:
        job = c.submit(sched_client.job_spec({"name": "hi", "run": "echo hi"})).job
        final = c.wait(job.id)
        for chunk in c.logs(job.id):
            ...

As a command:

    sched_client.py [--server ADDR] [--token T | --token-file F] [--ca-file F] COMMAND
        submit FILE|-     queue the job in FILE (YAML or JSON), print its id
        watch JOB         print the job's state changes until it ends
        logs JOB [-f]     print the job's output (-f: until it ends)
        run FILE|-        submit, watch until it ends, print its output
        nodes             list the nodes and their states

Exit status: 0 done (watch and run: the job SUCCEEDED); 1 the job ended FAILED or CANCELLED;
2 a usage, job file, token or CA file error; 3 a call failed (the gRPC code and schedd's message
are printed).

The generated modules are imported from --stubs, else $SCHED_PYTHON_STUBS, else sys.path.
"""

import argparse
import importlib
import json
import os
import sys
import uuid

DEFAULT_SERVER = "127.0.0.1:7070"
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "STOPPED_EARLY")

EXIT_OK = 0
EXIT_JOB_NOT_SUCCEEDED = 1
EXIT_USAGE = 2
EXIT_CALL_FAILED = 3


class SchedError(Exception):
    """A failure this client reports: a call, a job file, the stubs."""


class UsageError(SchedError):
    """What the caller gave does not do: a token, CA or stubs folder that cannot be used."""


class SpecError(UsageError):
    """A job file this client cannot map onto a JobSpec. str() names the field."""


class CallError(SchedError):
    """A call schedd (or gRPC) refused: the method, the grpc.StatusCode and the message."""

    def __init__(self, method, code, details):
        super().__init__("%s: %s: %s" % (method, code.name if code else "UNKNOWN", details or ""))
        self.method = method
        self.code = code
        self.details = details


class Stubs:
    """The generated modules and grpc, imported together."""

    def __init__(self, path=None):
        path = path or os.environ.get("SCHED_PYTHON_STUBS", "")
        if path:
            if not os.path.isfile(os.path.join(path, "sched", "v1", "__init__.py")):
                raise UsageError("%s holds no generated stubs: run client/python/generate.sh %s"
                                 % (path, path))
            # First, ahead of the standard library, whose module "sched" would hide sched.v1.
            sys.path.insert(0, os.path.abspath(path))
        try:
            self.grpc = importlib.import_module("grpc")
            for name in ("types_pb2", "job_service_pb2", "job_service_pb2_grpc",
                         "node_service_pb2", "node_service_pb2_grpc"):
                setattr(self, name, importlib.import_module("sched.v1." + name))
        except ImportError as e:
            raise UsageError(
                "cannot import the API modules (%s): install python3-grpcio and python3-protobuf, "
                "run client/python/generate.sh DIR and pass --stubs DIR (or set "
                "SCHED_PYTHON_STUBS)" % e) from None

    def state_name(self, state):
        """JOB_STATE_FAILED -> FAILED."""
        return self.types_pb2.JobState.Name(state)[len("JOB_STATE_"):]

    def node_state_name(self, state):
        return self.types_pb2.NodeState.Name(state)[len("NODE_STATE_"):]


# ---- job files

_TOP_KEYS = ("name", "project", "run", "setup", "env", "resources", "labels")
_RESOURCE_KEYS = ("cpus", "memory", "gpus")
_DECIMAL = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
            "gb": 10**9, "t": 10**12, "tb": 10**12}
_BINARY = {"ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
           "ti": 2**40, "tib": 2**40}


def _string(value, path):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SpecError("%s: expected a string, got %r" % (path, value))
    return value


def _scalar(value, path):
    """An env or label value: strings, numbers and booleans, written as in YAML."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise SpecError("%s: expected a string, number or boolean, got %r" % (path, value))


def _mapping(value, path, allowed=None):
    if not isinstance(value, dict):
        raise SpecError("%s: expected a mapping, got %r" % (path, value))
    for key in value:
        if not isinstance(key, str):
            raise SpecError("%s: expected plain keys, got %r" % (path, key))
        if allowed is not None and key not in allowed:
            where = "%s.%s" % (path, key) if path != "job spec" else key
            raise SpecError("%s: unknown key (this client maps %s; schedctl takes every field "
                            "of job.yaml)" % (where, ", ".join(allowed)))
    return value


def parse_byte_size(value, path):
    """Bytes from an integer or a size such as 512MB, 4GiB or 1.5G (units as in job.yaml)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2**63:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = len(text)
        while digits > 0 and text[digits - 1].isalpha():
            digits -= 1
        number, unit = text[:digits].strip(), text[digits:].lower()
        scale = _DECIMAL.get(unit) or _BINARY.get(unit)
        try:
            amount = float(number)
        except ValueError:
            amount = -1
        if scale and amount >= 0 and amount * scale < 2**63:
            return int(round(amount * scale))
    raise SpecError("%s: expected a size such as 8GB or 512MiB, got %r" % (path, value))


def spec_fields(doc):
    """Checks a parsed job file and returns it as plain fields: the JobSpec fields this client
    maps, with memory in bytes. SpecError names the first field that does not fit."""
    if doc is None:
        raise SpecError("run: required")
    _mapping(doc, "job spec", _TOP_KEYS)
    fields = {key: _string(doc.get(key), key) for key in ("name", "project", "run", "setup")}
    fields["env"] = [(name, _scalar(value, "env." + name))
                     for name, value in _mapping(doc.get("env") or {}, "env").items()]
    fields["labels"] = {key: _scalar(value, "labels." + key)
                        for key, value in _mapping(doc.get("labels") or {}, "labels").items()}
    resources = _mapping(doc.get("resources") or {}, "resources", _RESOURCE_KEYS)
    cpus = resources.get("cpus", 0)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 <= cpus < float("inf"):
        raise SpecError("resources.cpus: expected a non-negative number, got %r" % (cpus,))
    gpus = resources.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus < 2**32:
        raise SpecError("resources.gpus: expected a non-negative integer, got %r" % (gpus,))
    fields["cpus"] = float(cpus)
    fields["gpus"] = gpus
    fields["memory_bytes"] = parse_byte_size(resources.get("memory", 0), "resources.memory")
    return fields


def read_job_file(path):
    """The document in `path` ("-": stdin), YAML when python3-yaml is installed, else JSON."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise SpecError("cannot read %s: %s" % (path, e.strerror)) from None
    try:
        import yaml  # python3-yaml; JSON is YAML too.
    except ImportError:
        try:
            return json.loads(text)
        except ValueError as e:
            raise SpecError("%s: not JSON (%s); python3-yaml is not installed, so this client "
                            "reads JSON only" % (path, e)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError("%s: not YAML: %s" % (path, e)) from None


def job_spec(doc, stubs=None):
    """A sched.v1.JobSpec from a job file's document (a dict)."""
    stubs = stubs or Stubs()
    fields = spec_fields(doc)
    spec = stubs.types_pb2.JobSpec(name=fields["name"], project=fields["project"],
                                   run=fields["run"], setup=fields["setup"])
    for name, value in fields["env"]:
        spec.env.add(name=name, value=value)
    spec.labels.update(fields["labels"])
    spec.resources.cpus = fields["cpus"]
    spec.resources.gpus = fields["gpus"]
    spec.resources.memory_bytes = fields["memory_bytes"]
    return spec


# ---- calls

def read_token_file(path):
    """The first line of `path`, trimmed, as schedctl and sched-agent read token files."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except OSError as e:
        raise UsageError("cannot read the token file %s: %s" % (path, e.strerror)) from None
    if not token:
        raise UsageError("%s holds no token" % path)
    return token


class Client:
    """One channel to schedd. Every call presents `token` (when given) as
    `authorization: Bearer <token>`; with `ca_file` the channel is TLS and trusts only those
    certificates. Unary calls time out after `timeout_s`; streams run until they end.
    Failures raise CallError."""

    def __init__(self, server=DEFAULT_SERVER, token="", ca_file="", timeout_s=30.0, stubs=None):
        self.stubs = stubs or Stubs()
        grpc = self.stubs.grpc
        if ca_file:
            try:
                with open(ca_file, "rb") as f:
                    roots = f.read()
            except OSError as e:
                raise UsageError("cannot read the CA file %s: %s" % (ca_file, e.strerror)) from None
            if b"-----BEGIN CERTIFICATE-----" not in roots:
                raise UsageError("%s holds no PEM certificate" % ca_file)
            self._channel = grpc.secure_channel(
                server, grpc.ssl_channel_credentials(root_certificates=roots))
        else:
            self._channel = grpc.insecure_channel(server)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self._timeout_s = timeout_s
        self._jobs = self.stubs.job_service_pb2_grpc.JobServiceStub(self._channel)
        self._nodes = self.stubs.node_service_pb2_grpc.NodeServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, name, request):
        try:
            return method(request, timeout=self._timeout_s, metadata=self._metadata)
        except self.stubs.grpc.RpcError as e:
            raise CallError(name, e.code(), e.details()) from None

    def _stream(self, method, name, request):
        try:
            for item in method(request, metadata=self._metadata):
                yield item
        except self.stubs.grpc.RpcError as e:
            raise CallError(name, e.code(), e.details()) from None

    def submit(self, spec, request_id=None):
        """SubmitJobResponse. A retry with the same request_id returns the first job."""
        pb = self.stubs.job_service_pb2
        request = pb.SubmitJobRequest(spec=spec, request_id=request_id or str(uuid.uuid4()))
        return self._call(self._jobs.SubmitJob, "SubmitJob", request)

    def get_job(self, job_id):
        pb = self.stubs.job_service_pb2
        return self._call(self._jobs.GetJob, "GetJob", pb.GetJobRequest(job_id=job_id))

    def watch(self, job_id):
        """The job as it is now, then at every stored change (Job messages)."""
        pb = self.stubs.job_service_pb2
        for response in self._stream(self._jobs.WatchJobs, "WatchJobs",
                                     pb.WatchJobsRequest(job_id=job_id)):
            yield response.job

    def wait(self, job_id, on_change=None):
        """Watches the job until it ends and returns it; on_change(job) is called for the first
        state seen and each change of state."""
        last = None
        for job in self.watch(job_id):
            state = self.stubs.state_name(job.state)
            if state != last and on_change:
                on_change(job)
            last = state
            if state in TERMINAL_STATES:
                return job
        raise SchedError("WatchJobs ended before job %s did (last state %s)" % (job_id, last))

    def logs(self, job_id, follow=False, attempt=0):
        """LogChunk messages in stored order; with follow, until the job has ended."""
        pb = self.stubs.job_service_pb2
        request = pb.GetJobLogsRequest(job_id=job_id, follow=follow, attempt=attempt)
        return self._stream(self._jobs.GetJobLogs, "GetJobLogs", request)

    def list_nodes(self):
        pb = self.stubs.node_service_pb2
        return list(self._call(self._nodes.ListNodes, "ListNodes", pb.ListNodesRequest()).nodes)


# ---- the command

def describe_state(job, stubs):
    """One line: job/<id> FAILED on py-node, exit code 3 (and the message, when it says more)."""
    state = stubs.state_name(job.state)
    line = "job/%s %s" % (job.id, state)
    if job.node:
        line += " on " + job.node
    exit_code = "exit code %d" % job.exit_code
    if state in ("SUCCEEDED", "FAILED"):
        line += ", " + exit_code
    if job.message and job.message != exit_code:
        line += ": " + job.message
    return line


def _print_logs(client, job_id, follow):
    out = sys.stdout.buffer
    for chunk in client.logs(job_id, follow=follow):
        out.write(chunk.data)
        out.flush()


def _exit_for(job, stubs):
    return EXIT_OK if stubs.state_name(job.state) == "SUCCEEDED" else EXIT_JOB_NOT_SUCCEEDED


def _cmd_submit(client, args):
    response = client.submit(job_spec(read_job_file(args.file), client.stubs), args.request_id)
    print("job/%s submitted%s" % (response.job.id, " (existing)" if response.existing else ""))
    return EXIT_OK


def _cmd_watch(client, args):
    job = client.wait(args.job, lambda j: print(describe_state(j, client.stubs), flush=True))
    return _exit_for(job, client.stubs)


def _cmd_logs(client, args):
    _print_logs(client, args.job, args.follow)
    return EXIT_OK


def _cmd_run(client, args):
    # The spec is read before anything is sent: a bad file queues nothing.
    spec = job_spec(read_job_file(args.file), client.stubs)
    job = client.submit(spec, args.request_id).job
    print("job/%s submitted" % job.id, file=sys.stderr, flush=True)
    job = client.wait(job.id,
                      lambda j: print(describe_state(j, client.stubs), file=sys.stderr, flush=True))
    # follow: the stream ends once all of the ended job's output was sent.
    _print_logs(client, job.id, follow=True)
    return _exit_for(job, client.stubs)


def _cmd_nodes(client, args):
    for node in client.list_nodes():
        print("%s %s" % (node.name, client.stubs.node_state_name(node.state)))
    return EXIT_OK


def _parser():
    p = argparse.ArgumentParser(
        prog="sched_client.py", description="Submit and watch jobs on schedd over its gRPC API.")
    p.add_argument("--server", default=os.environ.get("SCHED_SERVER") or DEFAULT_SERVER,
                   help="schedd address (default: $SCHED_SERVER, else %s)" % DEFAULT_SERVER)
    p.add_argument("--token", help="API token <id>.<secret> (default: $SCHED_TOKEN)")
    p.add_argument("--token-file", "--token_file", dest="token_file",
                   help="file whose first line is the token (default: $SCHED_TOKEN_FILE)")
    p.add_argument("--ca-file", "--ca_file", dest="ca_file",
                   default=os.environ.get("SCHED_CA_FILE", ""),
                   help="schedd's CA certificate (PEM, <data_dir>/tls/ca.crt): connect over TLS "
                        "trusting it (default: $SCHED_CA_FILE)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="deadline of each unary call (default: 30)")
    p.add_argument("--stubs", help="folder generate.sh wrote (default: $SCHED_PYTHON_STUBS)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("submit", "queue a job, print its id"),
                            ("run", "submit, watch until it ends, print its output; exit 0 only "
                                    "when it SUCCEEDED")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("file", help="job file, YAML or JSON; - for stdin")
        s.add_argument("--request-id", help="idempotency key (default: a new UUID)")
    s = sub.add_parser("watch", help="print the job's state changes until it ends")
    s.add_argument("job", help="job id or unique prefix")
    s = sub.add_parser("logs", help="print the job's output")
    s.add_argument("job", help="job id or unique prefix")
    s.add_argument("-f", "--follow", action="store_true", help="until the job has ended")
    sub.add_parser("nodes", help="list the nodes and their states")
    return p


def _token(args):
    """Flags before the environment, a token before a token file, as schedctl."""
    if args.token:
        return args.token.strip()
    if args.token_file:
        return read_token_file(args.token_file)
    env_token = os.environ.get("SCHED_TOKEN", "").strip()
    if env_token:
        return env_token
    if os.environ.get("SCHED_TOKEN_FILE"):
        return read_token_file(os.environ["SCHED_TOKEN_FILE"])
    return ""


COMMANDS = {"submit": _cmd_submit, "watch": _cmd_watch, "logs": _cmd_logs, "run": _cmd_run,
            "nodes": _cmd_nodes}


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        with Client(args.server, _token(args), args.ca_file, args.timeout,
                    Stubs(args.stubs)) as client:
            return COMMANDS[args.command](client, args)
    except UsageError as e:
        print("sched_client: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    except SchedError as e:
        print("sched_client: %s" % e, file=sys.stderr)
        return EXIT_CALL_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
