#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 10s)
# and prints how many executions each ran. Fails on the first crasher; the
# crasher is written to the package's testdata/fuzz and becomes a regression
# test of the ordinary `go test` run once committed.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
status=0
while IFS=: read -r file _ line; do
  pkg=./$(dirname "$file")
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  echo "== $pkg $name ($t)"
  if ! out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" 2>&1); then
    echo "$out"; status=1; break
  fi
  grep -E 'fuzz: elapsed:.*execs' <<<"$out" | tail -1 || true
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '/hack/tools/' | sort)
exit $status
