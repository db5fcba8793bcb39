package v1alpha1

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Messages of the firmware.upgradeFrom rules, as the API server reports
// them (see the CEL markers of FirmwareSpec.UpgradeFrom).
const (
	msgUpgradeFromPadded  = "firmware.upgradeFrom entries must not start or end with white space: the station trims version.txt, so they would never match"
	msgUpgradeFromControl = "firmware.upgradeFrom entries must not contain a newline, a tab or any other control or invisible character: they are compared with the station's version.txt"
	msgUpgradeFromTarget  = "firmware.upgradeFrom must not contain firmware.package: a station that already runs it needs no update"
	// MaxUpgradeFrom bounds firmware.upgradeFrom (its MaxItems): the list is
	// copied into every written twin's ownership record, and IoT Hub
	// allows a twin 8 KiB of tags.
	MaxUpgradeFrom = 32
)

// ValidateUpgradeFrom checks spec.firmware.upgradeFrom, for the firmware
// package pkg, as the API server does. Each error names the entry.
func ValidateUpgradeFrom(from []string, pkg string) error {
	var errs []error
	if len(from) > MaxUpgradeFrom {
		errs = append(errs, fmt.Errorf("firmware.upgradeFrom must have at most %d items, not %d", MaxUpgradeFrom, len(from)))
	}
	for i, p := range from {
		add := func(msg string) { errs = append(errs, fmt.Errorf("firmware.upgradeFrom[%d] %q: %s", i, p, msg)) }
		switch n := len([]rune(p)); {
		case n == 0:
			add("must not be empty")
		case n > maxPackageLen:
			add("must be at most 64 characters")
		}
		if strings.TrimFunc(p, unicode.IsSpace) != p {
			add(msgUpgradeFromPadded)
		}
		if rePackageControl.MatchString(p) {
			add(msgUpgradeFromControl)
		}
		if slices.Index(from, p) < i {
			add("listed twice")
		}
	}
	if slices.Contains(from, pkg) {
		errs = append(errs, errors.New(msgUpgradeFromTarget))
	}
	return errors.Join(errs...)
}
