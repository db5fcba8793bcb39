// Package soak holds stationfleet's fault-injection soak: a thousand
// simulated stations, several overlapping rollouts, and a world that
// misbehaves (IoT Hub throttling, errors, latency, ETag conflicts and dropped
// connections; an Azurite outage; manager replicas killed with SIGKILL),
// with the system's promises checked as invariants at the end.
//
// `go test ./test/soak` runs a short soak (about a minute of faults) that
// fits in CI; `make soak` runs a longer one (SOAK_DURATION, default 5m).
package soak
