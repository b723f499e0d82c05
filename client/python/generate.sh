#!/bin/sh
# Generates the Python modules of sched's API from proto/sched/v1/*.proto into OUT:
# OUT/sched/v1/<file>_pb2.py (messages) and <file>_pb2_grpc.py (stubs). Put OUT on sys.path
# (SCHED_PYTHON_STUBS=OUT for sched_client.py) to import them as sched.v1.*.
#
# Needs protoc (protobuf-compiler), grpc_python_plugin (protobuf-compiler-grpc) and the
# well-known types google/protobuf/{timestamp,duration}.proto that protoc finds beside itself
# (libprotobuf-dev). Importing the modules needs python3-protobuf and python3-grpcio.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/../.." && pwd)

if ! command -v protoc >/dev/null 2>&1; then
  echo "generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2
  exit 1
fi
plugin=$(command -v grpc_python_plugin) || {
  echo "generate.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2
  exit 1
}

mkdir -p "$out"
protoc --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin" \
  -I "$root/proto" "$root"/proto/sched/v1/*.proto || {
  echo "generate.sh: protoc failed; google/protobuf/*.proto come with libprotobuf-dev" >&2
  exit 1
}
# Regular packages, not namespace ones: the standard library has a module named "sched", which
# would win over a namespace package of the same name and hide sched.v1.
touch "$out/sched/__init__.py" "$out/sched/v1/__init__.py"
