#!/usr/bin/env bash
# Fails when proto/ breaks a contract of the previous commit of main (buf's
# FILE rules): wire or generated-code compatibility for every caller.
#   scripts/breaking.sh [REV]    compare with REV (default HEAD~1)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
if ! git rev-parse --verify -q "$rev^{commit}" >/dev/null; then
  echo "breaking: no commit $rev to compare with (first commit); nothing to check"
  exit 0
fi
if ! git cat-file -e "$rev:proto" 2>/dev/null; then
  echo "breaking: $rev has no proto/; nothing to check"
  exit 0
fi
node_modules/.bin/buf breaking proto --against ".git#ref=$(git rev-parse "$rev"),subdir=proto"
echo "breaking: proto/ is compatible with $rev"
