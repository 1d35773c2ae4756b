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
# The old contracts import googleapis from node_modules like the new ones:
# rebuild them in a scratch copy of that commit's workspace with ours.
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git archive "$rev" proto buf.yaml | tar -x -C "$old"
ln -s "$PWD/node_modules" "$old/node_modules"
node_modules/.bin/buf build "$old/proto" -o "$old/image.binpb"
node_modules/.bin/buf breaking proto --against "$old/image.binpb"
echo "breaking: proto/ is compatible with $(git rev-parse --short "$rev")"
