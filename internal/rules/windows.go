package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// cronParser reads the 5-field cron expressions of strategy.windows, as a
// Kubernetes CronJob's schedule (minute hour day-of-month month
// day-of-week, names and ranges allowed). Descriptors such as @daily are
// refused here as by the CRD.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// maxMerge bounds how many overlapping activations WindowState follows to
// find where an open window ends: a window open longer than that (a
// schedule "* * * * *" with a duration of hours) counts as open with no
// known end.
const maxMerge = 1000

// Window is one parsed strategy window.
type Window struct {
	// Spec is the window as the rollout gives it.
	Spec fwv1.BatchWindow
	// Zone is the window's time zone (UTC when Spec.TimeZone is empty).
	Zone     *time.Location
	schedule cron.Schedule
}

// ParseWindows parses strategy.windows: each schedule with the cron library
// Kubernetes' CronJob controller uses (github.com/robfig/cron/v3), each zone
// with time.LoadLocation. The error names the window (1-based) and says what
// is wrong, with the parser's message.
func ParseWindows(specs []fwv1.BatchWindow) ([]Window, error) {
	out := make([]Window, 0, len(specs))
	for i, spec := range specs {
		w, err := ParseWindow(spec)
		if err != nil {
			return nil, fmt.Errorf("strategy.windows[%d]: %w", i, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// ParseWindow parses one window; see ParseWindows.
func ParseWindow(spec fwv1.BatchWindow) (Window, error) {
	name := spec.TimeZone
	if name == "" {
		name = "UTC"
	}
	if name == "Local" || strings.Contains(spec.Schedule, "TZ=") {
		return Window{}, fmt.Errorf("time zone %q: name an IANA zone in timeZone, such as Europe/Berlin", name)
	}
	zone, err := time.LoadLocation(name)
	if err != nil {
		return Window{}, fmt.Errorf("time zone %q is not in the time zone database: %w", name, err)
	}
	sched, err := cronParser.Parse(spec.Schedule)
	if err != nil {
		return Window{}, fmt.Errorf("schedule %q: %w", spec.Schedule, err)
	}
	// A schedule without TZ= is read in the zone of the time it is asked
	// about; the window's zone is set instead.
	if ss, ok := sched.(*cron.SpecSchedule); ok {
		ss.Location = zone
	}
	if spec.Duration.Duration < time.Minute {
		return Window{}, fmt.Errorf("duration %s is shorter than 1m", spec.Duration.Duration)
	}
	// The library looks five years ahead; a schedule such as "0 0 30 2 *"
	// (30 February) never activates and would keep the rollout waiting.
	probe := time.Date(2000, time.January, 1, 0, 0, 0, 0, zone)
	if sched.Next(probe).IsZero() {
		return Window{}, fmt.Errorf("schedule %q never activates", spec.Schedule)
	}
	return Window{Spec: spec, Zone: zone, schedule: sched}, nil
}

// WindowState is whether a rollout may start a batch at a time.
type WindowState struct {
	// Open is true when some window is open at the time (or the rollout
	// has no windows).
	Open bool
	// Until is when the open windows close (zero when the rollout has no
	// windows, or when they stay open beyond what can be followed).
	Until time.Time
	// Next is when the next window opens, when none is open (zero when
	// none ever opens again).
	Next time.Time
	// Window is the window that is open (Open) or opens next (Next): its
	// zone is the one to show the time in. Nil without windows.
	Window *Window
}

// WindowsAt says whether a batch may start at t: a window is open at t when
// some activation s of its schedule (in its zone) has s <= t < s +
// duration. Windows that overlap or follow each other without a gap count
// as one span, so Until is where the open span ends. With no windows, a
// batch may always start.
func WindowsAt(ws []Window, t time.Time) WindowState {
	if len(ws) == 0 {
		return WindowState{Open: true}
	}
	var st WindowState
	for i := range ws {
		w := &ws[i]
		if _, ok := w.openAt(t); ok {
			st.Open, st.Window = true, w
			break
		}
		if next := w.schedule.Next(t); !next.IsZero() && (st.Next.IsZero() || next.Before(st.Next)) {
			st.Next, st.Window = next.In(w.Zone), w
		}
	}
	if st.Open {
		st.Next = time.Time{}
		st.Until = spanEnd(ws, t)
	}
	return st
}

// openAt returns the earliest activation s with s <= t < s + duration.
// Next(x) is the first activation strictly after x, so the first activation
// after t - duration is the one to look at.
func (w *Window) openAt(t time.Time) (time.Time, bool) {
	s := w.schedule.Next(t.Add(-w.Spec.Duration.Duration))
	if s.IsZero() || s.After(t) {
		return time.Time{}, false
	}
	return s, true
}

// spanEnd is when the open span of windows that holds t ends: the latest
// end of an open window, extended while another window opens before the
// span closes. Zero when the span does not end within maxMerge steps.
func spanEnd(ws []Window, t time.Time) time.Time {
	var end time.Time
	for i := range ws {
		if s, ok := ws[i].openAt(t); ok {
			if e := s.Add(ws[i].Spec.Duration.Duration); e.After(end) {
				end = e
			}
		}
	}
	for range maxMerge {
		extended := false
		for i := range ws {
			// An activation at or before end (the end itself included:
			// a window that opens as another closes leaves no gap).
			s, ok := ws[i].openAt(end)
			if !ok {
				continue
			}
			if e := s.Add(ws[i].Spec.Duration.Duration); e.After(end) {
				end, extended = e, true
			}
		}
		if !extended {
			return end
		}
	}
	return time.Time{}
}

// String is the window as a person reads it: "0 2 * * * for 4h0m0s
// (Europe/Berlin)".
func (w Window) String() string {
	return fmt.Sprintf("%s for %s (%s)", w.Spec.Schedule, HumanDuration(w.Spec.Duration.Duration), w.Zone)
}

// HumanDuration is d for a message: whole minutes ("5h3m", "45m") from a
// minute up, seconds below ("40s").
func HumanDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	s := strings.TrimSuffix(d.Truncate(time.Minute).String(), "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// WindowWaitMessage says until when a rollout waits for a batch window:
// "waiting for a batch window: the next opens at
// 2026-12-03T02:00:00+01:00 (Europe/Berlin), in 5h3m".
func WindowWaitMessage(st WindowState, now time.Time) string {
	if st.Next.IsZero() || st.Window == nil {
		return "waiting for a batch window: none of strategy.windows opens again"
	}
	return fmt.Sprintf("waiting for a batch window: the next opens at %s (%s), in %s",
		st.Next.In(st.Window.Zone).Format(time.RFC3339), st.Window.Zone, HumanDuration(st.Next.Sub(now)))
}
