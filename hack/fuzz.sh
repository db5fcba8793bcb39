#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 10s)
# and prints how many executions each ran. Fails on the first crasher; the
# crasher is written to the package's testdata/fuzz and becomes a regression
# test of the ordinary `go test` run once committed.
#
# Go 1.26's fuzzing coordinator can report its own -fuzztime deadline as a
# failure ("context deadline exceeded", no crasher written) when a worker
# is mid-input as the time runs out, most often on a busy machine
# (golang/go#75804, fixed in Go 1.27). Such a run is reported as that race
# and run once more; a second one in a row fails. A crasher, a hang ("hung
# or terminated unexpectedly") or any other failure fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
status=0

# crashers lists the files in a target's corpus directory.
crashers() { find "$1/testdata/fuzz/$2" -type f 2>/dev/null | sort || true; }

# coordinator_race is true when a failed run is the deadline race: the only
# failure message is the deadline and no new corpus file was written.
coordinator_race() {
  local out=$1 before=$2 after=$3
  [[ "$before" == "$after" ]] || return 1
  grep -qE '^\s+context deadline exceeded$' <<<"$out" || return 1
  ! grep -qE 'panic|Failing input|hung or terminated|testdata/fuzz' <<<"$out"
}

while IFS=: read -r file _ line; do
  pkg=./$(dirname "$file")
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  echo "== $pkg $name ($t)"
  for attempt in 1 2; do
    before=$(crashers "$pkg" "$name")
    if out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" 2>&1); then
      grep -E 'fuzz: elapsed:.*execs' <<<"$out" | tail -1 || true
      break
    fi
    after=$(crashers "$pkg" "$name")
    if [[ $attempt == 1 ]] && coordinator_race "$out" "$before" "$after"; then
      grep -E 'fuzz: elapsed:.*execs' <<<"$out" | tail -1 || true
      echo "   the fuzzing coordinator reported its own deadline, no crasher written (golang/go#75804); once more"
      continue
    fi
    echo "$out"; status=1; break 2
  done
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '/hack/tools/' | sort)
exit $status
