#!/usr/bin/env bash
# Regenerates gen/ from proto/: ts-proto code for our contracts and for the
# google.rpc error details, and the descriptor set (with imports) that server
# reflection and Envoy's JSON transcoder read.
#   scripts/generate.sh          writes ./gen
#   scripts/generate.sh DIR      writes DIR/gen instead (to compare with ./gen)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-.}
buf=node_modules/.bin/buf
gp=node_modules/google-proto-files
rm -rf "$base/gen"
"$buf" generate proto -o "$base"
"$buf" generate "$gp" -o "$base" --path "$gp/google/rpc/status.proto" --path "$gp/google/rpc/error_details.proto"
"$buf" build -o "$base/gen/descriptor.binpb"
