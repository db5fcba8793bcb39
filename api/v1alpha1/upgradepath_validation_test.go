package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestUpgradeFromValidation: the API server refuses a firmware.upgradeFrom
// a station could never match, or that would name the target itself, with
// a message that says which entry and why; a valid list is stored as is.
func TestUpgradeFromValidation(t *testing.T) {
	list := func(v ...any) func(map[string]any) { return func(s map[string]any) { fw(s)["upgradeFrom"] = v } }
	many := make([]any, 33)
	for i := range many {
		many[i] = fmt.Sprintf("2.0.%d", i)
	}
	cases := []refusal{
		{"the target package itself", list("2.0.6", "2.0.7"),
			"spec.firmware.upgradeFrom: Invalid value: firmware.upgradeFrom must not contain firmware.package: a station that already runs it needs no update"},
		{"an empty entry", list("2.0.6", ""),
			"spec.firmware.upgradeFrom[1]: Invalid value: \"\": spec.firmware.upgradeFrom[1] in body should be at least 1 chars long"},
		{"an entry too long", list(strings.Repeat("9", 65)),
			"spec.firmware.upgradeFrom[0]: Too long: may not be more than 64 bytes"},
		{"an entry with trailing white space", list("2.0.6 "),
			`spec.firmware.upgradeFrom[0]: Invalid value: "2.0.6 ": firmware.upgradeFrom entries must not start or end with white space: the station trims version.txt, so they would never match`},
		{"an entry with a newline", list("2.0\n.6"),
			`spec.firmware.upgradeFrom[0]: Invalid value: "2.0\n.6": firmware.upgradeFrom entries must not contain a newline, a tab or any other control or invisible character: they are compared with the station's version.txt`},
		{"an entry with a zero-width space", list("2.0.5", "2.0.6\u200b"),
			`spec.firmware.upgradeFrom[1]: Invalid value: "2.0.6\u200b": firmware.upgradeFrom entries must not contain a newline`},
		{"a duplicate", list("2.0.6", "2.0.6"),
			`spec.firmware.upgradeFrom[1]: Duplicate value: "2.0.6"`},
		{"33 entries", list(many...),
			"spec.firmware.upgradeFrom: Too many: 33: must have at most 32 items"},
	}
	ns := expectRefused(t, "upgrade-from", cases)

	t.Run("valid, and immutable with the rest of firmware", func(t *testing.T) {
		g := NewWithT(t)
		ctx := context.Background()
		u := decode(t, validRollout)
		u.SetNamespace(ns)
		u.SetName("upgrade-from-valid")
		list("2.0.6", "2.0.6-rc.2+build.5", "versión-2 固件")(u.Object["spec"].(map[string]any))
		g.Expect(testEnv.Client.Create(ctx, u)).To(Succeed())
		r := &fwv1.FirmwareRollout{}
		g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(u), r)).To(Succeed())
		g.Expect(r.Spec.Firmware.UpgradeFrom).To(Equal([]string{"2.0.6", "2.0.6-rc.2+build.5", "versión-2 固件"}))
		r.Spec.Firmware.UpgradeFrom = append(r.Spec.Firmware.UpgradeFrom, "2.0.5")
		err := testEnv.Client.Update(ctx, r)
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring("spec.firmware is immutable"))
	})
}

// TestUpgradeFromGoCheckMatchesTheAPIServer: kubectl stationfleet publish
// refuses, before it uploads, exactly the upgradeFrom lists the API server
// refuses, with the same words.
func TestUpgradeFromGoCheckMatchesTheAPIServer(t *testing.T) {
	lists := [][]string{
		{"2.0.6"}, {"2.0.6", "2.0.6-hotfix1", "versión-2 固件"}, {"2.0.6 beta"},
		{"2.0.6 "}, {" 2.0.6"}, {"2.0.6\n"}, {"2.0\t.6"}, {"2.0.6\u200b"}, {"2.0.6\u00a0"}, {"2.0\u2028.6"},
		{"2.0.7"}, {"2.0.6", "2.0.7"}, {"2.0.6", "2.0.6"}, {""}, {strings.Repeat("9", 65)}, {strings.Repeat("é", 64)},
	}
	ns := testEnv.Namespace(t)
	for i, l := range lists {
		t.Run(fmt.Sprintf("%q", l), func(t *testing.T) {
			g := NewWithT(t)
			u := decode(t, validRollout)
			u.SetNamespace(ns)
			u.SetName(fmt.Sprintf("upgrade-from-go-%d", i))
			v := make([]any, len(l))
			for j := range l {
				v[j] = l[j]
			}
			fw(u.Object["spec"].(map[string]any))["upgradeFrom"] = v
			apiErr := testEnv.Client.Create(context.Background(), u)
			goErr := fwv1.ValidateUpgradeFrom(l, "2.0.7")
			if goErr == nil {
				g.Expect(apiErr).NotTo(HaveOccurred(), "the Go check accepts what the API server refuses")
				return
			}
			g.Expect(apiErr).To(HaveOccurred(), "the Go check refuses what the API server accepts: %v", goErr)
			for _, msg := range fwv1.UpgradeFromMessages {
				g.Expect(strings.Contains(apiErr.Error(), msg)).To(Equal(strings.Contains(goErr.Error(), msg)),
					"message %q: API server said %v; the Go check said %v", msg, apiErr, goErr)
			}
		})
	}
}
