#!/bin/sh
# The taskmesh image's entry point: runs one service by name, or a helper.
#
#   config | ledger | coordinator | worker | identity | ratelimit | events [args]
#                         the service, under the OpenTelemetry preload
#   probe [health service]  exit 0 when the app answers SERVING on 127.0.0.1:7000
#                         and its sidecar is ready (compose's health checks)
#   compose-init          deploy/compose's certificates, Envoy configs and secrets
#   edge-assets DIR       copies the edge's static files into DIR (an init container)
#
# A service reads its settings from the environment (docs/design.md); for
# DATABASE_URL, REDIS_URL and TASKMESH_IDENTITY_KEK, VAR_FILE names a file
# holding the value instead (a mounted secret), as the postgres image does.
set -eu

build=/app/build

for var in DATABASE_URL REDIS_URL TASKMESH_IDENTITY_KEK; do
  eval "file=\${${var}_FILE:-}"
  if [ -n "$file" ]; then
    value=$(cat "$file")
    export "$var=$value"
    unset "${var}_FILE"
  fi
done

command="${1:-}"
[ "$#" -gt 0 ] && shift
case "$command" in
  config | ledger | coordinator | worker | identity | ratelimit | events)
    exec node --import "$build/packages/kit/src/telemetry/register.js" "$build/services/$command/src/main.js" "$@"
    ;;
  probe)
    exec node "$build/deploy/container/probe.js" "$@"
    ;;
  compose-init)
    exec node "$build/deploy/compose/init.js" "$@"
    ;;
  edge-assets)
    mkdir -p "$1"
    exec cp -R /app/edge-assets/. "$1/"
    ;;
  *)
    echo "usage: <config|ledger|coordinator|worker|identity|ratelimit|events> [args] | probe [service] | compose-init | edge-assets DIR" >&2
    exit 2
    ;;
esac
