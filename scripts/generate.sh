#!/usr/bin/env bash
# Regenerates packages/contracts/gen/ from proto/: ts-proto code for our contracts, for the
# google.rpc error details and for Envoy's rate limit and runtime discovery
# services, its extension config discovery service (ECDS) and the local rate
# limit filter's config (which services/ratelimit implements and serves), and two descriptor sets
# (with imports):
#   packages/contracts/gen/descriptor.binpb       our contracts, google.api/rpc and health: what
#                                 server reflection and Envoy's JSON transcoder read
#   packages/contracts/gen/envoy-ratelimit.binpb     envoy.service.ratelimit.v3, envoy.service.runtime.v3,
#                                 envoy.service.extension.v3 and their imports, for
#                                 the ratelimit service's reflection
# and the HTTP API's OpenAPI document, packages/contracts/gen/openapi/taskmesh.swagger.json
# (buf.gen.openapi.yaml, finished by scripts/openapi.mjs), which the edge
# serves with Swagger UI at /docs.
#   scripts/generate.sh          writes ./packages/contracts/gen
#   scripts/generate.sh DIR      writes DIR/packages/contracts/gen instead (to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-.}
buf=node_modules/.bin/buf
gp=node_modules/google-proto-files
xds=node_modules/@grpc/grpc-js-xds/deps
rls=$xds/envoy-api/envoy/service/ratelimit/v3/rls.proto
rtds=$xds/envoy-api/envoy/service/runtime/v3/rtds.proto
ecds=$xds/envoy-api/envoy/service/extension/v3/config_discovery.proto
lrl=$xds/envoy-api/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto
rm -rf "$base/packages/contracts/gen"
"$buf" generate proto -o "$base"
# protoc-gen-openapiv2, pinned: built once into the cache (as npm start and npm test do).
openapi_dir=$(node scripts/go-tools.mjs protoc-gen-openapiv2)
PATH="$openapi_dir:$PATH" "$buf" generate proto --template buf.gen.openapi.yaml -o "$base"
node scripts/openapi.mjs "$base/packages/contracts/gen/openapi/taskmesh.swagger.json"
"$buf" generate "$gp" -o "$base" --path "$gp/google/rpc/status.proto" --path "$gp/google/rpc/error_details.proto"
"$buf" generate "$xds/envoy-api" -o "$base" --path "$rls" --path "$rtds" --path "$ecds" --path "$lrl"
# Envoy's modules stay out of the main set: it serves our own services.
"$buf" build -o "$base/packages/contracts/gen/descriptor.binpb" \
  --exclude-path "$xds/envoy-api/envoy" --exclude-path "$xds/xds/udpa" --exclude-path "$xds/xds/xds" \
  --exclude-path "$xds/protoc-gen-validate/validate"
"$buf" build "$xds/envoy-api" --path "$rls" --path "$rtds" --path "$ecds" -o "$base/packages/contracts/gen/envoy-ratelimit.binpb"
