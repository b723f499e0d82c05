#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/<target>/seed-* (docs/fuzzing.md).

Seeds that show a product bug not fixed yet go to tests/fuzz/crashes/<target>/crash-* instead;
once it is fixed they move to corpus/<target>/crash-* (crash="open" becomes "fixed").
Protobuf seeds are written as text here and encoded with protoc, so they stay readable and
follow the .proto files. Run from anywhere; it needs protoc on PATH. Inputs libFuzzer added to
the corpus (named by their sha1) are left alone; seeds are rewritten.

    python3 tests/fuzz/make_seeds.py
"""

import pathlib
import struct
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO = ROOT / "proto"
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"

SECRET = b"0123456789abcdef" * 4  # side_records_fuzzer.cc's kSecret


def encode(message, text, proto_file):
    """`text` (protobuf text format) as the bytes of sched.v1.`message`."""
    return subprocess.run(
        ["protoc", f"-I{PROTO}", "-I/usr/include", f"--encode=sched.v1.{message}",
         str(PROTO / "sched" / "v1" / proto_file)],
        input=text.encode(), capture_output=True, check=True).stdout


def s16(data):
    """FuzzInput::String: a two-byte length, then the bytes."""
    if isinstance(data, str):
        data = data.encode()
    return struct.pack("<H", len(data)) + data


def u32(v):
    return struct.pack("<I", v)


def write(target, name, data, crash=None):
    """A seed. `crash` "open": an input that shows a product bug not fixed yet, kept as
    crashes/<target>/crash-<name> (not replayed by ctest) until it is; "fixed": one that showed a
    bug since fixed, kept as corpus/<target>/crash-<name> so the replay guards the fix."""
    folder = (CRASHES if crash == "open" else CORPUS) / target
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "crash" if crash else "seed"
    (folder / f"{prefix}-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


# ---- job_spec_yaml: job.yaml text

FULL_YAML = """\
name: train-7b
project: llm
setup: pip install -r requirements.txt
run: python train.py
env: {WANDB_MODE: offline, EPOCHS: 3}
resources: {gpus: 1, gpu_memory: 24GB, gpu_model: [H100, A100], cpus: 0.5, memory: 8GB}
priority: 10
labels: {team: nlp}
model: {parameters: 7B, precision: bf16, method: qlora, batch_size: 4,
        sequence_length: 2048, gradient_checkpointing: true, optimizer: adamw, lora_rank: 16}
runtime: {duration: 3h, gpu_model: a100-80gb}
deadline: 2026-11-27T08:00:00Z
max_cost: 5.00
placement: prefer-local
spot: auto
"""


def job_spec_yaml_seeds():
    t = "job_spec_yaml"
    write(t, "hello", (ROOT / "deploy" / "examples" / "hello.yaml").read_bytes())
    write(t, "full", FULL_YAML)
    write(t, "minimal", "run: echo hi\n")
    write(t, "empty", "")
    write(t, "null-doc", "~\n")
    write(t, "list-doc", "[1, 2, 3]\n")
    write(t, "no-run", "name: x\nresources: {gpus: 1}\n")
    write(t, "runtime-scalar", "run: x\nruntime: 90m\ndeadline: 12h\nspot: on-demand\n"
                                "placement: cloud-only\nmax_cost: $12.50\n")
    write(t, "model-inference", "run: x\nresources: {gpus: 2}\n"
                                 "model: {parameters: 70B, precision: int4, method: inference}\n")
    write(t, "model-huge", "run: x\nresources: {gpus: 1}\n"
                            "model: {parameters: 100T, method: full, precision: fp32,"
                            " batch_size: 1048576, sequence_length: 16777216}\n", crash="fixed")
    write(t, "huge-numbers", "run: x\npriority: 99999999999999999999\n"
                              "resources: {gpus: 4294967296, memory: 9999999999999TB,"
                              " cpus: 1e309}\nmax_cost: 1e400\n")
    write(t, "negative", "run: x\npriority: -1001\nresources: {gpus: -1, cpus: -0.5}\n")
    write(t, "nan", "run: x\nresources: {cpus: .nan}\nmax_cost: nan\n")
    write(t, "far-deadline", "run: x\ndeadline: 9999-12-31T23:59:59Z\nruntime: 99999999h\n")
    write(t, "infinite-deadline", "run: x\ndeadline: infinite-future\n")
    write(t, "past-deadline", "run: x\ndeadline: 1970-01-01T00:00:01Z\n")
    write(t, "duplicate-key", "run: a\nrun: b\n")
    write(t, "unknown-key", "run: x\nimage: ubuntu\n")
    write(t, "secrets", "run: x\nsecrets: [TOKEN, API_KEY]\nenv: {A: 1}\n")
    write(t, "secrets-bad", "run: x\nsecrets: TOKEN\nenv: {TOKEN: [1]}\n")
    # yaml-cpp turns a NUL byte and the byte after it into bytes that are not UTF-8 ("\0N"
    # becomes 0x85), though the text itself is UTF-8; such control characters are now refused.
    write(t, "nul-in-text", b"run: a\x00Nb\n", crash="fixed")
    write(t, "bad-env", "run: x\nenv: {SCHED_JOB_ID: 1, 1BAD: 2, OK: [1]}\n")
    write(t, "anchors", "base: &b {gpus: 1}\nrun: x\nresources: *b\n")
    write(t, "merge-key", "run: x\nresources: {<<: {gpus: 1}, cpus: 2}\n")
    write(t, "complex-key", "? [a, b]\n: c\nrun: x\n")
    write(t, "nul-bytes", b"run: \"a\\0b\"\nname: \"x\x00y\"\n")
    write(t, "binary", bytes(range(256)))
    write(t, "deep-list", "run: x\nlabels: " + "[" * 512 + "]" * 512 + "\n")
    write(t, "deep-map", "run: x\nlabels: " + "{a: " * 300 + "b" + "}" * 300 + "\n")
    write(t, "tabs", "run:\tx\n\tname: y\n")
    write(t, "block-scalars", "run: |\n  echo a\n  echo b\nsetup: >\n  folded\n  text\n")
    write(t, "bad-name", "run: x\nname: ../etc\nproject: -bad\nlabels: {'a b': c}\n")


# ---- requests: a selector byte, then a request's bytes

SPEC = """
  name: "train" project: "llm" run: "python train.py" setup: "pip install x"
  env { name: "WANDB_MODE" value: "offline" }
  env { name: "TOKEN" value: "s3cret" secret: true }
  resources { gpus: 1 gpu_models: "H100" cpus: 0.5 memory_bytes: 8589934592 }
  priority: 10
  labels { key: "team" value: "nlp" }
  model { parameters: 7000000000 precision: "int4" method: "qlora" optimizer: "adamw"
          batch_size: 4 sequence_length: 2048 lora_rank: 16 }
  runtime { seconds: 3600 gpu_model: "a100-80gb" }
  deadline { seconds: 1790000000 }
  max_cost: 5
  placement: PLACEMENT_POLICY_CHEAPEST spot: SPOT_POLICY_AUTO
"""

CAPABILITIES = """
  cpus: 16 memory_bytes: 68719476736 disk_bytes: 1099511627776
  gpus { index: 0 uuid: "GPU-1" model: "NVIDIA H100 80GB HBM3" memory_bytes: 85899345920 }
  provider: "local" price_per_hour: 0.42 hostname: "box" gpu_detection: "nvml"
  labels { key: "rack" value: "a" }
  local_price { power_watts: 700 electricity_dollars_per_kwh: 0.3 hardware_cost_dollars: 30000
                amortize_months: 36 energy_dollars_per_hour: 0.21
                amortization_dollars_per_hour: 1.14 }
  price_schedule { utc_offset_minutes: 60
                   windows { start_minute: 1320 end_minute: 360 dollars_per_hour: 0.08 }
                   windows { start_minute: 1020 end_minute: 1260 dollars_per_hour: 0.45 } }
"""


def requests_seeds():
    t = "requests"

    def req(name, selector, message, text, proto_file, crash=None):
        write(t, name, bytes([selector]) + encode(message, text, proto_file), crash)

    req("submit-full", 0, "SubmitJobRequest", f"spec {{ {SPEC} }} request_id: \"r-1\"",
        "job_service.proto")
    req("submit-minimal", 0, "SubmitJobRequest", 'spec { run: "true" }', "job_service.proto")
    req("submit-vram-huge", 0, "SubmitJobRequest",
        'spec { run: "x" resources { gpus: 1 } model { parameters: 100000000000000 '
        'method: "full" precision: "fp32" batch_size: 1048576 sequence_length: 16777216 } }',
        "job_service.proto", crash="fixed")
    req("submit-edges", 0, "SubmitJobRequest",
        'spec { name: "../x" project: "/abs" run: " \\t\\n" resources { cpus: nan '
        'gpu_memory_bytes: -1 } priority: 2147483647 runtime { seconds: -1 } '
        'deadline { seconds: 9223372036854775807 nanos: 999999999 } max_cost: inf '
        'placement: 99 spot: -7 }', "job_service.proto")
    req("submit-big-cpus", 0, "SubmitJobRequest",
        'spec { run: "x" resources { cpus: -1e300 memory_bytes: 9223372036854775807 } '
        'deadline { seconds: -9223372036854775808 nanos: -999999999 } }', "job_service.proto")
    req("submit-env-dup", 0, "SubmitJobRequest",
        'spec { run: "x" env { name: "A" value: "1" } env { name: "A" value: "2" secret: true } '
        'env { name: "SCHED_X" value: "y" } }', "job_service.proto")
    req("estimate", 1, "EstimateJobRequest", f"spec {{ {SPEC} }}", "job_service.proto")
    req("list-states", 2, "ListJobsRequest",
        'states: JOB_STATE_PENDING states: JOB_STATE_CANCELLED states: 0 states: 7 states: -1 '
        'page_size: 4294967295 page_token: "18446744073709551616"', "job_service.proto")
    req("agent-register", 3, "AgentMessage",
        f'register {{ node_name: "box" capabilities {{ {CAPABILITIES} }} '
        'running { job_id: "0123456789abcdef" epoch: 3 } }', "agent_service.proto")
    req("agent-register-edges", 3, "AgentMessage",
        'register { node_name: "x" capabilities { cpus: inf memory_bytes: -1 '
        'price_per_hour: nan price_schedule { utc_offset_minutes: -2147483648 '
        'windows { start_minute: 1440 end_minute: 4294967295 dollars_per_hour: -1 } } } }',
        "agent_service.proto")
    req("agent-register-offset", 3, "AgentMessage",
        'register { node_name: "x" capabilities { cpus: 1 price_per_hour: 1 '
        'price_schedule { utc_offset_minutes: -2147483648 } } }', "agent_service.proto",
        crash="fixed")
    req("agent-register-overlap", 3, "AgentMessage",
        'register { node_name: "x" capabilities { cpus: 1 price_per_hour: 1 price_schedule { '
        'windows { start_minute: 0 end_minute: 1440 dollars_per_hour: 1e308 } '
        'windows { start_minute: 600 end_minute: 660 dollars_per_hour: 0 } } } }',
        "agent_service.proto")
    req("agent-update", 3, "AgentMessage",
        'update { job_id: "0123456789abcdef" epoch: 1 state: JOB_STATE_SUCCEEDED exit_code: 0 '
        'preempted: true resumed_from: "ckpt" resumed_from_seq: 2 }', "agent_service.proto")
    req("agent-update-bad-state", 3, "AgentMessage", 'update { state: 77 }', "agent_service.proto")
    req("agent-log", 3, "AgentMessage",
        'log { job_id: "j" epoch: 1 stream: LOG_STREAM_STDERR data: "a\\000b" }',
        "agent_service.proto")
    req("token-admin", 4, "CreateTokenRequest", 'role: ROLE_ADMIN description: "ops"',
        "token_service.proto")
    req("token-member", 4, "CreateTokenRequest",
        'role: ROLE_MEMBER projects: "llm" projects: "vision" ttl { seconds: 86400 }',
        "token_service.proto")
    req("token-agent", 4, "CreateTokenRequest",
        'role: ROLE_AGENT uses: 3 labels { key: "rack" value: "a" } ttl { seconds: 3600 }',
        "token_service.proto")
    req("token-huge-ttl", 4, "CreateTokenRequest",
        'role: ROLE_AGENT ttl { seconds: 9223372036854775807 nanos: 999999999 }',
        "token_service.proto", crash="fixed")
    req("token-bad", 4, "CreateTokenRequest",
        'role: 9 uses: -1 projects: "a b" ttl { seconds: -5 }', "token_service.proto")
    req("budget", 5, "SetBudgetRequest",
        'project: "llm" monthly_limit: 100 alert_percents: 50 alert_percents: 90',
        "cost_service.proto")
    req("budget-edges", 5, "SetBudgetRequest",
        'project: "" monthly_limit: nan alert_percents: 90 alert_percents: 50 soft: true',
        "cost_service.proto")
    req("commit-dir", 6, "CommitCheckpointRequest",
        'uploader { job_id: "j" epoch: 1 node_name: "n" } attempt: 1 name: "step-100" '
        'is_dir: true files { path: "model/weights.bin" size_bytes: 3 mode: 420 '
        'chunks: "' + "a" * 64 + '" } files { path: "opt.pt" size_bytes: 0 mode: 384 }',
        "checkpoint_service.proto")
    req("commit-escape", 6, "CommitCheckpointRequest",
        'name: ".." is_dir: true files { path: "../../etc/passwd" } '
        'files { path: "/abs" } files { path: "a//b" }', "checkpoint_service.proto")
    req("commit-huge", 6, "CommitCheckpointRequest",
        'name: "big" files { size_bytes: 18446744073709551615 }', "checkpoint_service.proto")


# ---- checkpoint_files: FuzzInput strings, a manifest, flags, contents, cuts

def checkpoint_input(name, path, sha, manifest_text, flags=0, contents=(), cuts=()):
    data = s16(name) + s16(path) + s16(sha)
    data += s16(encode("Checkpoint", manifest_text, "checkpoint_service.proto"))
    data += bytes([flags])
    for c in contents:
        if isinstance(c, tuple):  # (byte value, count): a run
            data += bytes([1, c[0]]) + u32(c[1])
        else:
            data += bytes([0]) + s16(c)
    for cut in cuts:
        data += u32(cut)
    return data


def checkpoint_files_seeds():
    t = "checkpoint_files"
    dir_manifest = ('name: "step-100" is_dir: true '
                    'files { path: "model/weights.bin" mode: 420 } '
                    'files { path: "optimizer.pt" mode: 384 } files { path: "empty" }')
    write(t, "dir-fixed", checkpoint_input("step-100", "model/weights.bin", "a" * 64,
                                           dir_manifest, 1, [b"weights", b"adam", b""], [3, 2]))
    write(t, "file-whole-sha", checkpoint_input("ckpt.pt", "x", "0" * 64, 'name: "ckpt.pt"', 3,
                                                [b"single file"], [5]))
    write(t, "dir-corrupt", checkpoint_input("a", "b", "c", dir_manifest, 5,
                                             [b"weights", b"adam", b""], [1, 4]))
    write(t, "dir-extra", checkpoint_input("a", "b", "c", dir_manifest, 9,
                                           [b"weights", b"adam", b""], [100]) + s16(b"more"))
    write(t, "two-chunks", checkpoint_input("big", "big", "f" * 64, 'name: "big"', 1,
                                            [(0x41, 4 * 1024 * 1024 + 1)], [4 * 1024 * 1024]))
    write(t, "unfixed-sizes", checkpoint_input(
        "x", "y", "z", 'name: "x" is_dir: true files { path: "a" size_bytes: 5 chunks: "' +
        "0" * 64 + '" }', 0, [b"hello"]))
    write(t, "huge-size", checkpoint_input(
        "big", "big", "f" * 64, 'name: "big" files { size_bytes: 18446744073709551615 }', 0,
        [b"x"]), crash="fixed")
    # The same manifest given a whole chunk of bytes: Writer::Add then looks up chunk 0 of a
    # file that has none.
    write(t, "huge-size-write", checkpoint_input(
        "big", "big", "f" * 64, 'name: "big" files { size_bytes: 18446744073709551615 }', 0,
        [(0x41, 4 * 1024 * 1024)]), crash="fixed")
    write(t, "escape-paths", checkpoint_input(
        "..", "../etc/passwd", "G" * 64,
        'name: "evil" is_dir: true files { path: "../x" } files { path: "/abs" }', 1, [b"", b""]))
    write(t, "nested-conflict", checkpoint_input(
        ".hidden", "a/./b", "a" * 63,
        'name: "c" is_dir: true files { path: "a" } files { path: "a/b" }', 1, [b"1", b"2"]))
    write(t, "names", checkpoint_input("ckpt.tmp", "a\\b", "A" * 64, 'name: "ok"', 0, []))
    write(t, "nul-path", checkpoint_input("a\x00b", "a\x00b", "a\x00" * 32, 'name: "n"', 0, []))
    write(t, "long-path", checkpoint_input("n" * 128, "p/" * 511 + "pp", "a" * 64,
                                           'name: "' + "n" * 129 + '"', 0, []))
    write(t, "long-name-part", checkpoint_input(
        "n", "x" * 300, "a" * 64, 'name: "n" is_dir: true files { path: "' + "x" * 300 + '" }',
        1, [b"data"]))
    write(t, "mode-and-dup", checkpoint_input(
        "m", "m", "m", 'name: "m" is_dir: true files { path: "a" mode: 4095 } '
        'files { path: "a" mode: 4096 }', 1, [b"", b""]))
    write(t, "dir-empty", checkpoint_input("d", "d", "d", 'name: "d" is_dir: true', 0, []))


# ---- stored_state: a selector byte, then a stored record's bytes

JOB = f"""
  id: "0123456789abcdef" spec {{ {SPEC} }} state: JOB_STATE_RUNNING attempt: 2 epoch: 7
  node: "box" gpu_indexes: 0 gpu_indexes: 3
  create_time {{ seconds: 1700000000 }} start_time {{ seconds: 1700000100 nanos: 5 }}
  update_time {{ seconds: 1700000200 }} message: "running" request_id: "r-1"
  decision {{ decide_time {{ seconds: 1700000050 }} placed: true summary: "on box"
    options {{ node: "box" provider: "local" local: true fits_now: true
      start_time {{ seconds: 1700000050 }} finish_time {{ seconds: 1700003650 }}
      runtime_seconds: 3600 price_per_hour: 0.42 cost: 0.42 verdict: "chosen" reason: "" }}
    options {{ node: "cloud" verdict: "dearer" cost: nan runtime_seconds: inf }}
    nodes_considered: 2 local_blocker: "none" }}
  attempts {{ attempt: 1 epoch: 6 node: "old" provider: "aws" spot: true
    start_time {{ seconds: 1700000000 }} end_time {{ seconds: 1700000090 }}
    end_reason: "preempted" preempted: true }}
  attempts {{ attempt: 2 epoch: 7 node: "box" start_time {{ seconds: 1700000100 }} }}
  preemptions: 1
"""

SCHEDULE = ('utc_offset_minutes: -300 windows { start_minute: 0 end_minute: 420 '
            'dollars_per_hour: 0.12 } windows { start_minute: 1020 end_minute: 1260 '
            'dollars_per_hour: 0.45 }')


def stored_state_seeds():
    t = "stored_state"

    def rec(name, selector, message, text, crash=None):
        write(t, name, bytes([selector]) + encode(message, text, "storage.proto"), crash)

    rec("job", 0, "StoredJob",
        f"job {{ {JOB} }} seq: 12 lease_start_unix_ms: 1700000100000 "
        f"lease_price_per_hour: 0.42 lease_provider: \"local\" "
        f"lease_price_schedule {{ {SCHEDULE} }}")
    rec("job-minimal", 0, "StoredJob", 'job { id: "j" state: JOB_STATE_PENDING }')
    rec("job-bad-state", 0, "StoredJob", 'job { id: "j" state: 0 }')
    rec("job-bad-verdict", 0, "StoredJob",
        'job { state: JOB_STATE_PENDING decision { decide_time { seconds: 1 } '
        'options { verdict: "maybe" } local_blocker: "weather" } }')
    rec("job-far-times", 0, "StoredJob",
        'job { state: JOB_STATE_SUCCEEDED create_time { seconds: 9223372036854775807 '
        'nanos: 999999999 } finish_time { seconds: -9223372036854775808 nanos: -1 } '
        'spec { run: "x" deadline { seconds: 9223372036854775807 } runtime { seconds: '
        '9223372036854775807 } resources { cpus: -1e300 } } } '
        'lease_start_unix_ms: -9223372036854775808')
    rec("job-schedule-offset", 0, "StoredJob",
        'job { state: JOB_STATE_RUNNING } lease_price_schedule { utc_offset_minutes: '
        '-2147483648 }', crash="fixed")
    rec("node", 1, "StoredNode",
        f'name: "box" capabilities {{ {CAPABILITIES} }} cordoned: true '
        'register_time_unix_ms: 1700000000000')
    rec("node-edges", 1, "StoredNode",
        'name: "" capabilities { cpus: 1000001 memory_bytes: -5 } draining: true')
    rec("ledger", 2, "StoredLedgerEntry",
        f'job_id: "0123456789abcdef" epoch: 7 attempt: 2 project: "llm" node: "box" '
        f'provider: "local" price_per_hour: 0.42 start_unix_ms: 1749000000000 '
        f'end_unix_ms: 1749990000000 price_schedule {{ {SCHEDULE} }}')
    rec("ledger-open", 2, "StoredLedgerEntry",
        'job_id: "j" price_per_hour: 1e308 start_unix_ms: 0 end_unix_ms: 9223372036854775807')
    rec("ledger-negative", 2, "StoredLedgerEntry",
        'job_id: "j" price_per_hour: -3 start_unix_ms: 1749990000000 end_unix_ms: 1749000000000 '
        'price_schedule { windows { start_minute: 100 end_minute: 100 } }')
    rec("budget", 3, "StoredBudget",
        'project: "llm" monthly_limit: 100 alert_percents: 50 alert_percents: 80 '
        'hard_cap: true update_time_unix_ms: 1700000000000')
    rec("budget-edges", 3, "StoredBudget", 'monthly_limit: nan alert_percents: -2147483648')
    rec("log", 4, "StoredLogChunk",
        'attempt: 1 stream: LOG_STREAM_STDERR data: "oops\\n" time_unix_ms: 1700000000000')
    rec("log-edges", 4, "StoredLogChunk", 'stream: 9 time_unix_ms: -9223372036854775808')


# ---- side_records: records for a MemoryStore, then a token to present

def side_input(records, presented=b"", join=False):
    data = bytes([len(records)])
    for kind, key, value in records:
        data += bytes([kind]) + s16(key) + s16(value)
    return data + s16(presented) + bytes([1 if join else 0])


def token(text):
    return encode("StoredToken", text, "storage.proto")


def manifest(text):
    return encode("Checkpoint", text, "checkpoint_service.proto")


def side_records_seeds():
    t = "side_records"
    admin_id = "00000000000000a1"
    agent_id = "00000000000000b2"
    admin = token(f'token {{ id: "{admin_id}" role: ROLE_ADMIN create_time {{ seconds: 1 }} '
                  'uses_left: -1 created_by: "bootstrap" } secret_sha256: "x"')
    agent = token(f'token {{ id: "{agent_id}" role: ROLE_AGENT uses_left: 2 '
                  'create_time { seconds: 1700000000 } expire_time { seconds: 1800000000 } '
                  'labels { key: "rack" value: "a" } }')
    member = token('token { id: "00000000000000c3" role: ROLE_MEMBER projects: "llm" '
                   'revoked: true uses_left: -1 }')
    expired = token('token { id: "00000000000000d4" role: ROLE_VIEWER uses_left: -1 '
                    'expire_time { seconds: 1000 } }')
    write(t, "tokens", side_input(
        [(0x10, admin_id, admin), (0x10, agent_id, agent), (0x10, "00000000000000c3", member),
         (0, "00000000000000d4", expired)], f"{agent_id}.".encode() + SECRET, True))
    write(t, "token-used-up", side_input(
        [(0x10, agent_id, token(f'token {{ id: "{agent_id}" role: ROLE_AGENT uses_left: 0 }}'))],
        f"{agent_id}.".encode() + SECRET, True))
    write(t, "token-garbage", side_input([(0, "zz", b"\xff\xff\xff")], b"x.y"))
    write(t, "token-bad-id", side_input([(0, "ABC", token('token { id: "ABC" }'))]))
    write(t, "token-misfiled", side_input(
        [(0x10, "zzzz", admin), (0x10, admin_id, token(f'token {{ id: "{admin_id}" '
                                                        'role: ROLE_VIEWER }'))]))
    def cert(text):
        return encode("StoredNodeCertificate", text, "storage.proto")

    write(t, "certs", side_input(
        [(1, "01", cert('node: "box" not_after_unix: 1800000000 labels { key: "rack" value: "a" }')),
         (1, "02", cert('node: "box" revoked: true revoked_unix_ms: 1700000000000')),
         (1, "03", cert('node: "other" not_after_unix: 1000')),
         (1, "04", cert('node: "other" revoked: true revoked_unix_ms: -9223372036854775808'))]))
    write(t, "cert-garbage", side_input([(1, "05", b"box\tgood")]))
    write(t, "cert-no-node", side_input([(1, "06", cert("revoked: true"))]))
    write(t, "checkpoints", side_input(
        [(2, "0123456789abcdef/0000000000000001",
          manifest('job_id: "0123456789abcdef" seq: 1 name: "step-1" is_dir: true '
                   'files { path: "w.bin" size_bytes: 3 chunks: "' + "a" * 64 + '" }')),
         (2, "0123456789abcdef/0000000000000002",
          manifest('job_id: "0123456789abcdef" seq: 2 name: "step-2" '
                   'files { size_bytes: 1 chunks: "../../../../etc/passwd" '
                   'chunks: "' + "b" * 64 + '" }'))]))
    write(t, "checkpoint-garbage", side_input([(2, "j/1", b"\x0a\xff")]))
    write(t, "mixed", side_input(
        [(0x10, admin_id, admin), (1, "07", cert('node: "box"')),
         (2, "j/0000000000000001", manifest('job_id: "j" seq: 1 name: "c"')),
         (3, "a/t/00000000000000e5", token('token { id: "00000000000000e5" }'))],
        f"{admin_id}.".encode() + SECRET, False))


def main():
    job_spec_yaml_seeds()
    requests_seeds()
    checkpoint_files_seeds()
    stored_state_seeds()
    side_records_seeds()


if __name__ == "__main__":
    main()
