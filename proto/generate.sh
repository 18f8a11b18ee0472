#!/usr/bin/env bash
# Regenerates the Go code for netmsg's .proto files:
#   proto/envelope.proto        -> proto/envelopepb/envelope.pb.go
#   internal/testpb/test.proto  -> internal/testpb/test.pb.go
#   bench/internal/benchpb/bench.proto -> bench/internal/benchpb/bench.pb.go
#     (the bench module's contract; its go_package is under this module path,
#     so the same --go_opt=module places it)
#
# Usage: proto/generate.sh [OUTDIR]
# Run from anywhere; paths are taken from the repository root. OUTDIR
# (default: the repository root) receives the files at the same relative
# paths; .ci/run passes a temporary directory to check that the committed
# files are current.
#
# Pinned tools (their versions are written into the generated headers, so a
# different version shows up as a diff in CI):
#   protoc         3.21.12   (Debian bookworm: apt-get install -y protobuf-compiler)
#   protoc-gen-go  v1.36.12  (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)
#
# Set NETMSG_PROTOC_ANY_VERSION=1 to skip the version check (the output will
# then differ from the committed files in its header comments).
set -euo pipefail

want_protoc="libprotoc 3.21.12"
want_gen="protoc-gen-go v1.36.12"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root}" && cd "${1:-$root}" && pwd)"
cd "$root"

gobin="$(go env GOBIN)"
PATH="${gobin:-$(go env GOPATH | cut -d: -f1)/bin}:$PATH"

if ! command -v protoc >/dev/null; then
  echo "generate.sh: protoc not found (apt-get install -y protobuf-compiler)" >&2
  exit 1
fi
if ! command -v protoc-gen-go >/dev/null; then
  echo "generate.sh: protoc-gen-go not found (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)" >&2
  exit 1
fi

if [[ "${NETMSG_PROTOC_ANY_VERSION:-}" != 1 ]]; then
  got_protoc="$(protoc --version)"
  got_gen="$(protoc-gen-go --version)"
  if [[ "$got_protoc" != "$want_protoc" || "$got_gen" != "$want_gen" ]]; then
    echo "generate.sh: want '$want_protoc' and '$want_gen', have '$got_protoc' and '$got_gen'" >&2
    echo "generate.sh: set NETMSG_PROTOC_ANY_VERSION=1 to generate anyway" >&2
    exit 1
  fi
fi

protoc -I . \
  --go_out="$out" --go_opt=module=github.com/netmsg/netmsg \
  proto/envelope.proto \
  internal/testpb/test.proto \
  bench/internal/benchpb/bench.proto
