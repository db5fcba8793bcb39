package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// waitsForWindow reports whether the rollout waits for a batch window
// (strategy.windows): phase Paused in a batch step, not paused by
// spec.paused, with status.nextWindow set. The step and nextWindow decide,
// not the Ready condition (RegistryError while the controller retries an
// error; nextWindow stays through it).
func waitsForWindow(obj *fwv1.FirmwareRollout) bool {
	st := &obj.Status
	if st.Phase != fwv1.PhasePaused || obj.Spec.Paused || st.NextWindow == nil {
		return false
	}
	i := int(st.CurrentStep)
	steps := obj.Spec.Strategy.Steps
	return i >= 1 && i <= len(steps) && steps[i-1].Batch != nil
}

// windowRefusal is why resume does not apply to a rollout waiting for a
// batch window. The Argo CD resume action says the same words, with
// status.nextWindow as the API server serializes it.
func windowRefusal(obj *fwv1.FirmwareRollout) string {
	return fmt.Sprintf("is waiting for a batch window, which is not a pause: the next batch starts by itself when a window opens (at %s)",
		obj.Status.NextWindow.UTC().Format(time.RFC3339))
}

// renderWindows writes the rollout's batch windows and whether one is open
// now, as the controller decides it (internal/rules).
func (p printer) renderWindows(w io.Writer, obj *fwv1.FirmwareRollout, line func(k, format string, args ...any)) {
	specs := obj.Spec.Strategy.Windows
	if len(specs) == 0 {
		return
	}
	ws, err := rules.ParseWindows(specs)
	if err != nil {
		line("Windows", "%s", p.paint(ansiRed, "invalid: "+err.Error()))
		return
	}
	shown := make([]string, len(ws))
	for i, win := range ws {
		shown[i] = win.String()
	}
	line("Windows", "%s", strings.Join(shown, "; "))
	line("Window", "%s", p.windowState(rules.WindowsAt(ws, p.now)))
}

// windowState is "open until ..." or "closed: the next opens at ...".
func (p printer) windowState(st rules.WindowState) string {
	switch {
	case st.Open && st.Until.IsZero():
		return p.paint(ansiGreen, "open") + ": a batch may start now"
	case st.Open:
		return p.paint(ansiGreen, "open") + fmt.Sprintf(" until %s (%s, in %s): a batch may start now",
			st.Until.In(st.Window.Zone).Format(time.RFC3339), st.Window.Zone, rules.HumanDuration(st.Until.Sub(p.now)))
	case st.Next.IsZero():
		return p.paint(ansiYellow, "closed") + ": no window opens again"
	}
	return p.paint(ansiYellow, "closed") + fmt.Sprintf(": the next opens at %s (%s), in %s",
		st.Next.In(st.Window.Zone).Format(time.RFC3339), st.Window.Zone, rules.HumanDuration(st.Next.Sub(p.now)))
}
