package v1alpha1_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// windowSpec is one strategy.windows entry as a manifest holds it.
func windowSpec(schedule, duration, zone string) map[string]any {
	w := map[string]any{"schedule": schedule, "duration": duration}
	if zone != "" {
		w["timeZone"] = zone
	}
	return w
}

// TestBatchWindowsRefused: the API server refuses a malformed batch window
// with a message that says what a window must look like. What CEL cannot
// know (an hour of 25, a zone missing from the database) the controller
// reports when it parses the window.
func TestBatchWindowsRefused(t *testing.T) {
	one := func(w map[string]any) func(map[string]any) {
		return func(s map[string]any) { strategy(s)["windows"] = []any{w} }
	}
	const fields = "windows[].schedule must have exactly 5 fields separated by spaces: minute hour day-of-month month day-of-week, for example 0 2 * * *"
	const chars = "windows[].schedule may contain only digits, the names JAN-DEC and SUN-SAT, the characters * ? , - / and spaces between fields"
	const dur = "windows[].duration must be from 1m to 168h (7 days)"
	const zone = "windows[].timeZone must be an IANA time zone name such as Europe/Berlin or UTC: letters, digits, '_', '+', '-' and '/' between parts"
	cases := []refusal{
		{"four fields", one(windowSpec("0 2 * *", "4h", "")), `spec.strategy.windows[0].schedule: Invalid value: "0 2 * *": ` + fields},
		{"six fields (seconds)", one(windowSpec("0 0 2 * * *", "4h", "")), fields},
		{"a descriptor", one(windowSpec("@daily", "4h", "")),
			"windows[].schedule must be 5 cron fields (minute hour day-of-month month day-of-week), not a descriptor such as @daily: write 0 0 * * * for @daily"},
		{"a zone in the schedule", one(windowSpec("TZ=Europe/Berlin 0 2 * * *", "4h", "")),
			"windows[].schedule must not name a time zone (TZ=...): set windows[].timeZone instead"},
		{"a shell character", one(windowSpec("0 2 * * *;", "4h", "")), chars},
		{"a tab", one(windowSpec("0 2 * *\t*", "4h", "")), chars},
		{"schedule missing", one(map[string]any{"duration": "4h"}), "spec.strategy.windows[0].schedule: Required value"},
		{"duration missing", one(map[string]any{"schedule": "0 2 * * *"}), "spec.strategy.windows[0].duration: Required value"},
		{"duration under a minute", one(windowSpec("0 2 * * *", "30s", "")), dur},
		{"duration over a week", one(windowSpec("0 2 * * *", "169h", "")), dur},
		{"duration in days", one(windowSpec("0 2 * * *", "1d", "")), `spec.strategy.windows[0].duration: Invalid value: "1d"`},
		{"zone with a space", one(windowSpec("0 2 * * *", "4h", "Europe/ Berlin")), zone},
		{"zone climbing out", one(windowSpec("0 2 * * *", "4h", "../../etc/passwd")), zone},
		{"zone Local", one(windowSpec("0 2 * * *", "4h", "Local")),
			"windows[].timeZone must name a zone: Local would be the manager's own zone, which differs between clusters"},
		{"nine windows", func(s map[string]any) {
			ws := make([]any, 9)
			for i := range ws {
				ws[i] = windowSpec(fmt.Sprintf("0 %d * * *", i), "1h", "")
			}
			strategy(s)["windows"] = ws
		}, "spec.strategy.windows: Too many: 9: must have at most 8 items"},
	}
	expectRefused(t, "window", cases)
}

// TestBatchWindowsAccepted: the windows the README shows are accepted, and
// the time zone defaults to UTC.
func TestBatchWindowsAccepted(t *testing.T) {
	g := NewWithT(t)
	u := decode(t, validRollout)
	u.SetNamespace(testEnv.Namespace(t))
	strategy(u.Object["spec"].(map[string]any))["windows"] = []any{
		windowSpec("0 1 * * MON-FRI", "4h", "Europe/Berlin"),
		windowSpec("0 22 * * SAT,SUN", "8h", "America/Argentina/Buenos_Aires"),
		windowSpec("*/15  0-5 1,15 JAN-MAR ?", "1m", "Etc/GMT+5"),
		windowSpec("30 3 * * *", "168h", ""),
	}
	g.Expect(testEnv.Client.Create(context.Background(), u)).To(Succeed())
	r := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(u), r)).To(Succeed())
	g.Expect(r.Spec.Strategy.Windows).To(HaveLen(4))
	g.Expect(r.Spec.Strategy.Windows[0].Duration.Duration).To(Equal(4 * time.Hour))
	g.Expect(r.Spec.Strategy.Windows[3].TimeZone).To(Equal("UTC"), "the default zone")
}
