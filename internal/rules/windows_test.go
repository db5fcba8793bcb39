package rules

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

func win(schedule string, d time.Duration, zone string) fwv1.BatchWindow {
	return fwv1.BatchWindow{Schedule: schedule, Duration: metav1.Duration{Duration: d}, TimeZone: zone}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	z, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// TestWindowsAt: open or not, until when, and the next opening, across
// zones, days of the week, midnight and daylight saving time changes.
func TestWindowsAt(t *testing.T) {
	berlin, ny := mustZone(t, "Europe/Berlin"), mustZone(t, "America/New_York")
	at := func(loc *time.Location, y int, m time.Month, d, h, min int) time.Time {
		return time.Date(y, m, d, h, min, 0, 0, loc)
	}
	cases := []struct {
		name    string
		windows []fwv1.BatchWindow
		t       time.Time
		open    bool
		until   time.Time // when open
		next    time.Time // when closed
		zone    string    // of the window open or opening next
	}{
		{name: "no windows: always open", t: at(berlin, 2026, 12, 2, 20, 57), open: true},
		{name: "before a nightly window", windows: []fwv1.BatchWindow{win("0 2 * * *", 4*time.Hour, "Europe/Berlin")},
			t: at(berlin, 2026, 12, 2, 20, 57), next: at(berlin, 2026, 12, 3, 2, 0), zone: "Europe/Berlin"},
		{name: "at the opening", windows: []fwv1.BatchWindow{win("0 2 * * *", 4*time.Hour, "Europe/Berlin")},
			t: at(berlin, 2026, 12, 3, 2, 0), open: true, until: at(berlin, 2026, 12, 3, 6, 0), zone: "Europe/Berlin"},
		{name: "a second before the close", windows: []fwv1.BatchWindow{win("0 2 * * *", 4*time.Hour, "Europe/Berlin")},
			t: at(berlin, 2026, 12, 3, 6, 0).Add(-time.Second), open: true, until: at(berlin, 2026, 12, 3, 6, 0), zone: "Europe/Berlin"},
		{name: "at the close: the next night", windows: []fwv1.BatchWindow{win("0 2 * * *", 4*time.Hour, "Europe/Berlin")},
			t: at(berlin, 2026, 12, 3, 6, 0), next: at(berlin, 2026, 12, 4, 2, 0), zone: "Europe/Berlin"},
		{name: "default zone is UTC", windows: []fwv1.BatchWindow{win("0 2 * * *", time.Hour, "")},
			t: at(berlin, 2026, 12, 3, 2, 30), next: at(time.UTC, 2026, 12, 3, 2, 0), zone: "UTC"},
		{name: "weeknights across midnight: open on Saturday morning", windows: []fwv1.BatchWindow{win("0 22 * * MON-FRI", 8*time.Hour, "UTC")},
			t: at(time.UTC, 2026, 12, 5, 3, 0), open: true, until: at(time.UTC, 2026, 12, 5, 6, 0), zone: "UTC"},
		{name: "weeknights: Saturday night waits for Monday", windows: []fwv1.BatchWindow{win("0 22 * * MON-FRI", 8*time.Hour, "UTC")},
			t: at(time.UTC, 2026, 12, 5, 22, 0), next: at(time.UTC, 2026, 12, 7, 22, 0), zone: "UTC"},
		{name: "the same schedule in New York opens later", windows: []fwv1.BatchWindow{win("0 2 * * *", time.Hour, "America/New_York")},
			t: at(time.UTC, 2026, 12, 3, 2, 30), next: at(ny, 2026, 12, 3, 2, 0), zone: "America/New_York"},
		{name: "several windows: the earliest opening, in its zone", windows: []fwv1.BatchWindow{
			win("0 2 * * *", time.Hour, "America/New_York"), win("0 4 * * *", time.Hour, "Europe/Berlin")},
			t: at(time.UTC, 2026, 12, 3, 0, 0), next: at(berlin, 2026, 12, 3, 4, 0), zone: "Europe/Berlin"},
		{name: "windows that follow each other make one span", windows: []fwv1.BatchWindow{
			win("0 1 * * *", 2*time.Hour, "UTC"), win("0 3 * * *", time.Hour, "UTC")},
			t: at(time.UTC, 2026, 12, 3, 1, 30), open: true, until: at(time.UTC, 2026, 12, 3, 4, 0), zone: "UTC"},
		{name: "a window longer than its period never closes", windows: []fwv1.BatchWindow{win("* * * * *", 5*time.Minute, "UTC")},
			t: at(time.UTC, 2026, 12, 3, 1, 30), open: true, zone: "UTC"},
		{name: "every other minute for a minute: closed on odd minutes", windows: []fwv1.BatchWindow{win("*/2 * * * *", time.Minute, "UTC")},
			t: at(time.UTC, 2026, 12, 3, 1, 31), next: at(time.UTC, 2026, 12, 3, 1, 32), zone: "UTC"},

		// Daylight saving time in Berlin, 2026: the clocks go from 02:00
		// to 03:00 on 29 March and from 03:00 back to 02:00 on 25 October.
		{name: "spring forward: 02:30 does not exist, so no window that night", windows: []fwv1.BatchWindow{win("30 2 * * *", time.Hour, "Europe/Berlin")},
			t: at(berlin, 2026, 3, 29, 1, 0), next: at(berlin, 2026, 3, 30, 2, 30), zone: "Europe/Berlin"},
		{name: "spring forward: the duration is elapsed time", windows: []fwv1.BatchWindow{win("0 1 * * *", 2*time.Hour, "Europe/Berlin")},
			t: at(berlin, 2026, 3, 29, 3, 30), open: true, until: at(berlin, 2026, 3, 29, 4, 0), zone: "Europe/Berlin"},
		{name: "fall back: 02:30 happens twice, the first window is over", windows: []fwv1.BatchWindow{win("30 2 * * *", 30*time.Minute, "Europe/Berlin")},
			t:    time.Date(2026, 10, 25, 1, 15, 0, 0, time.UTC), // 02:15 CET, the second 02:15 of the night
			next: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), zone: "Europe/Berlin"},
		{name: "fall back: the second 02:30 opens again", windows: []fwv1.BatchWindow{win("30 2 * * *", 30*time.Minute, "Europe/Berlin")},
			t: time.Date(2026, 10, 25, 1, 45, 0, 0, time.UTC), open: true, until: time.Date(2026, 10, 25, 2, 0, 0, 0, time.UTC), zone: "Europe/Berlin"},
		{name: "New York spring forward (8 March 2026)", windows: []fwv1.BatchWindow{win("30 2 * * *", time.Hour, "America/New_York")},
			t: at(ny, 2026, 3, 8, 1, 0), next: at(ny, 2026, 3, 9, 2, 30), zone: "America/New_York"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ws, err := ParseWindows(tc.windows)
			g.Expect(err).NotTo(HaveOccurred())
			st := WindowsAt(ws, tc.t)
			g.Expect(st.Open).To(Equal(tc.open))
			if tc.open {
				g.Expect(st.Next.IsZero()).To(BeTrue())
				g.Expect(st.Until.Equal(tc.until)).To(BeTrue(), "until %s, want %s", st.Until, tc.until)
			} else {
				g.Expect(st.Next.Equal(tc.next)).To(BeTrue(), "next %s, want %s", st.Next, tc.next)
				g.Expect(st.Next.After(tc.t)).To(BeTrue())
			}
			if tc.zone != "" {
				g.Expect(st.Window).NotTo(BeNil())
				g.Expect(st.Window.Zone.String()).To(Equal(tc.zone))
			}
		})
	}
}

// TestWindowWaitMessage: what a waiting rollout says, in the zone of the
// window it waits for.
func TestWindowWaitMessage(t *testing.T) {
	g := NewWithT(t)
	ws, err := ParseWindows([]fwv1.BatchWindow{win("0 2 * * *", 4*time.Hour, "Europe/Berlin")})
	g.Expect(err).NotTo(HaveOccurred())
	now := time.Date(2026, 12, 2, 19, 57, 0, 0, time.UTC) // 20:57 in Berlin
	g.Expect(WindowWaitMessage(WindowsAt(ws, now), now)).To(Equal(
		"waiting for a batch window: the next opens at 2026-12-03T02:00:00+01:00 (Europe/Berlin), in 5h3m"))
}

func TestHumanDuration(t *testing.T) {
	g := NewWithT(t)
	for d, want := range map[time.Duration]string{
		40 * time.Second:                 "40s",
		1500 * time.Millisecond:          "2s",
		45*time.Minute + 10*time.Second:  "45m",
		5*time.Hour + 3*time.Minute:      "5h3m",
		5 * time.Hour:                    "5h",
		50*time.Hour + 59*time.Second:    "50h",
		26*time.Hour + 1*time.Minute + 1: "26h1m",
	} {
		g.Expect(HumanDuration(d)).To(Equal(want), "%s", d)
	}
}

// TestParseWindowsRefuses: what the controller stalls with, naming the
// window and what the cron parser or the time zone database said.
func TestParseWindowsRefuses(t *testing.T) {
	ok := win("0 2 * * *", time.Hour, "UTC")
	cases := []struct {
		name string
		w    fwv1.BatchWindow
		msg  string
	}{
		{"minute out of range", win("61 2 * * *", time.Hour, "UTC"), `strategy.windows[1]: schedule "61 2 * * *": end of range (61) above maximum (59): 61`},
		{"six fields", win("0 0 2 * * *", time.Hour, "UTC"), `strategy.windows[1]: schedule "0 0 2 * * *": expected exactly 5 fields, found 6: [0 0 2 * * *]`},
		{"descriptor", win("@daily", time.Hour, "UTC"), `strategy.windows[1]: schedule "@daily"`},
		{"unknown day name", win("0 2 * * FUN", time.Hour, "UTC"), `strategy.windows[1]: schedule "0 2 * * FUN": failed to parse int from FUN`},
		{"never activates", win("0 0 30 2 *", time.Hour, "UTC"), `strategy.windows[1]: schedule "0 0 30 2 *" never activates`},
		{"unknown zone", win("0 2 * * *", time.Hour, "Mars/Olympus_Mons"), `strategy.windows[1]: time zone "Mars/Olympus_Mons" is not in the time zone database: unknown time zone Mars/Olympus_Mons`},
		{"Local", win("0 2 * * *", time.Hour, "Local"), `strategy.windows[1]: time zone "Local": name an IANA zone in timeZone`},
		{"zone in the schedule", win("TZ=Europe/Berlin 0 2 * * *", time.Hour, "UTC"), `strategy.windows[1]: time zone "UTC": name an IANA zone in timeZone`},
		{"too short", win("0 2 * * *", time.Second, "UTC"), `strategy.windows[1]: duration 1s is shorter than 1m`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := ParseWindows([]fwv1.BatchWindow{ok, tc.w})
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(HavePrefix(tc.msg))
		})
	}
}

// FuzzWindows: any schedule, zone and duration either parses or is refused
// with an error naming the window, never a panic; a parsed window is open
// at a time or names an opening after it, and an open one ends after it
// (or never).
func FuzzWindows(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "*/15 0-5 1,15 JAN-MAR ?", "0 22 * * MON-FRI", "* * * * *", "0 0 29 2 *", "61 * * * *", "@every 1h", "TZ=UTC 0 2 * * *", "0 0 30 2 *"} {
		f.Add(s, "Europe/Berlin", int64(time.Hour), int64(1796000000))
	}
	f.Add("30 2 * * *", "America/New_York", int64(30*time.Minute), int64(1773000000))
	f.Fuzz(func(t *testing.T, schedule, zone string, d, unix int64) {
		if d < int64(time.Minute) || d > int64(168*time.Hour) || unix < 0 || unix > 4e9 {
			return // the API server refuses such durations; times of this era
		}
		ws, err := ParseWindows([]fwv1.BatchWindow{win(schedule, time.Duration(d), zone)})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "strategy.windows[0]: ") {
				t.Fatalf("error does not name the window: %v", err)
			}
			return
		}
		now := time.Unix(unix, 0)
		st := WindowsAt(ws, now)
		switch {
		case st.Open && !st.Until.IsZero() && !st.Until.After(now):
			t.Fatalf("open at %s until %s", now, st.Until)
		case !st.Open && !st.Next.IsZero() && !st.Next.After(now):
			t.Fatalf("closed at %s, opens at %s", now, st.Next)
		case !st.Open && !st.Next.IsZero() && !WindowsAt(ws, st.Next).Open:
			t.Fatalf("not open at its opening %s", st.Next)
		}
	})
}
