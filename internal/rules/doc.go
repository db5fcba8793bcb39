// Package rules holds the rollout rules that the controller, the CUPS
// server and the CLI share, as pure functions of the twins and the rollout:
// a station's outcome within a rollout (Evaluate, Classify, EvaluateStation),
// which rollouts still hold their stations (ActiveRollouts), how many
// stations a batch step writes (BatchSize), how many failures halt a rollout
// (FailureLimit), how many sends a station gets (AttemptsUsedUp), which
// stations a firmware may be installed on (OnUpgradePath, OffUpgradePath,
// SkipForRefusal), and when a batch may start (ParseWindows, WindowsAt:
// strategy.windows).
//
// Every replica and every restart reaches the same answer from the same
// twins, and the CLI shows exactly what the controller counts. The package
// imports the API types, the twin schema and the cron parser only: neither
// the controller nor an adapter.
package rules
