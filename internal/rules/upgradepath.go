package rules

import (
	"fmt"
	"slices"
	"strings"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Upgrade paths (firmware.upgradeFrom, AWS IoT Jobs' current-version rule):
// a firmware may name the packages it may be installed over. The CUPS
// server sends it only to a station that reports one of them
// (OnUpgradePath); the controller does not write a station the CUPS server
// has already seen on another package (OffUpgradePath), and lets go of one
// it wrote before the CUPS server saw it once the server refused it
// (SkipForRefusal). Either way the station is Skipped NotOnUpgradePath,
// never Failed.

// OnUpgradePath reports whether a station reporting pkg may be sent a
// firmware whose upgradeFrom is from: always when from is empty.
func OnUpgradePath(pkg string, from []string) bool {
	return len(from) == 0 || slices.Contains(from, pkg)
}

// OffUpgradePath reports whether a station must not be written by a
// rollout of package target with upgradeFrom from: the CUPS server has seen
// it (seen), it does not run target already, and the package it last
// reported (reported; "" for a station without version.txt) is not in from.
func OffUpgradePath(seen bool, reported, target string, from []string) bool {
	return seen && reported != target && !OnUpgradePath(reported, from)
}

// skipForRefusal is the table from the CUPS refusals that are no failure
// to the skip reason the rollout counts. A refusal is in this table or in
// failureForRefusal, never both.
var skipForRefusal = map[string]fwv1.SkipReason{
	twin.RefusalNotOnUpgradePath: fwv1.SkipNotOnUpgradePath,
}

// SkipForRefusal returns the skip reason for a CUPS refusal that is not a
// failure (NotOnUpgradePath), and false for any other refusal.
func SkipForRefusal(refusal string) (fwv1.SkipReason, bool) {
	r, ok := skipForRefusal[refusal]
	return r, ok
}

// NotOnUpgradePathMessage says, for a person, why a station reporting
// reported is skipped by a rollout with upgradeFrom from:
// `reports package "v0.9"; firmware.upgradeFrom allows "v1.0", "v1.1"`.
func NotOnUpgradePathMessage(reported string, from []string) string {
	quoted := make([]string, len(from))
	for i, p := range from {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	if reported == "" {
		return "reports no package (no version.txt); firmware.upgradeFrom allows " + strings.Join(quoted, ", ")
	}
	return fmt.Sprintf("reports package %q; firmware.upgradeFrom allows %s", reported, strings.Join(quoted, ", "))
}

// notOnUpgradePath is the Skipped outcome of a station off the upgrade path.
func notOnUpgradePath(s Station, p Params) Outcome {
	return Outcome{State: fwv1.OutcomeSkipped, Reason: string(fwv1.SkipNotOnUpgradePath),
		Message: NotOnUpgradePathMessage(s.Package, p.UpgradeFrom)}
}
