package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// barWidth is the number of cells of a batch progress bar.
const barWidth = 24

// Bar cells: updated, failed, in progress, not yet reported.
const (
	cellUpdated    = '#'
	cellFailed     = 'x'
	cellInProgress = '~'
	cellRest       = '.'
)

// ANSI colours, used only on a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiBold   = "\x1b[1m"
)

// printer renders a rollout for people.
type printer struct {
	now   time.Time
	color bool
	// cmd is how the user invokes the CLI, for hints.
	cmd string
}

func (p printer) paint(code, s string) string {
	if !p.color || s == "" {
		return s
	}
	return code + s + ansiReset
}

func (p printer) ago(t time.Time) string {
	d := p.now.Sub(t)
	if d < 0 {
		return "in " + duration.HumanDuration(-d)
	}
	return duration.HumanDuration(d) + " ago"
}

func phaseColor(ph fwv1.RolloutPhase) string {
	switch ph {
	case fwv1.PhaseCompleted:
		return ansiGreen
	case fwv1.PhaseHalted, fwv1.PhaseAborted, fwv1.PhaseAborting:
		return ansiRed
	case fwv1.PhasePaused:
		return ansiYellow
	}
	return ansiCyan
}

// renderStatus writes the status of obj: summary, a progress bar per step,
// failures, conditions and what to do next.
func (p printer) renderStatus(w io.Writer, obj *fwv1.FirmwareRollout) {
	st := &obj.Status
	spec := &obj.Spec
	steps := spec.Strategy.Steps
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-11s %s\n", k+":", fmt.Sprintf(format, args...))
	}

	line("Rollout", "%s/%s", obj.Namespace, obj.Name)
	fw := spec.Firmware
	extra := fmt.Sprintf("keyChecksum %d", fw.KeyChecksum)
	if fw.Model != "" {
		extra += ", model " + fw.Model
	}
	line("Firmware", "%s from %s (%s)", fw.Package, fw.URL, extra)
	if len(fw.UpgradeFrom) > 0 {
		line("Upgrades", "only stations reporting %s (firmware.upgradeFrom); others are skipped", quoteList(fw.UpgradeFrom))
	}

	phase := st.Phase
	if phase == "" {
		phase = fwv1.PhasePending
	}
	where := ""
	switch {
	case st.CurrentStep > 0:
		where = fmt.Sprintf(", step %d of %d", st.CurrentStep, len(steps))
	case len(steps) > 0:
		where = fmt.Sprintf(", not started (%d steps)", len(steps))
	}
	flags := ""
	if spec.Paused {
		flags += ", spec.paused"
	}
	if spec.Abort {
		flags += ", spec.abort"
	}
	line("Phase", "%s%s%s", p.paint(ansiBold+phaseColor(phase), string(phase)), where, flags)
	ready := meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady)
	if ready != nil && ready.Message != "" {
		line("Message", "%s", ready.Message)
	}
	if st.ObservedGeneration < obj.Generation {
		line("Observed", "generation %d of %d: the controller has not acted on the latest change yet", st.ObservedGeneration, obj.Generation)
	}
	inProgress := fmt.Sprintf("%d in progress", st.InProgress)
	if st.Baking > 0 {
		inProgress += fmt.Sprintf(" (%d baking)", st.Baking)
	}
	line("Stations", "%s updated of %d targets: %s failed, %s, %d pending, %d skipped",
		p.paint(ansiGreen, fmt.Sprint(st.Updated)), st.Targets, p.paint(redIf(st.Failed > 0), fmt.Sprint(st.Failed)), inProgress, st.Pending, st.Skipped)
	if st.SkippedNotOnUpgradePath > 0 {
		line("Skipped", "%d not on the upgrade path: they report another package than firmware.upgradeFrom lists (`%s stations %s --outcome Skipped`)",
			st.SkippedNotOnUpgradePath, p.cmd, obj.Name)
	}
	if b := spec.Strategy.BakeTime; b != nil && b.Duration > 0 {
		line("Bake time", "%s: a station is Updated that long after it reports the package, unless it keeps coming back to CUPS (Unhealthy) or falls back (RolledBack)",
			rules.ShortDuration(b.Duration))
	}
	p.renderFailurePolicy(line, obj)
	p.renderWindows(w, obj, line)
	if st.StartTime != nil {
		line("Started", "%s (%s)", st.StartTime.UTC().Format(time.RFC3339), p.ago(st.StartTime.Time))
	}
	if st.CompletionTime != nil {
		line("Finished", "%s (%s)", st.CompletionTime.UTC().Format(time.RFC3339), p.ago(st.CompletionTime.Time))
	}

	if len(steps) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Steps:")
		p.renderSteps(w, obj)
	}

	if len(st.Failures) > 0 {
		fmt.Fprintln(w)
		shown := fmt.Sprintf("Failures (%d):", st.Failed)
		if int(st.Failed) > len(st.Failures) {
			shown = fmt.Sprintf("Failures (latest %d of %d; `%s stations %s --outcome Failed` lists all):", len(st.Failures), st.Failed, p.cmd, obj.Name)
		}
		fmt.Fprintln(w, shown)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  DEVICE ID\tREASON\tSINCE\tMESSAGE")
		for _, f := range st.Failures {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.DeviceID, f.Reason, p.ago(f.Time.Time), f.Message)
		}
		_ = tw.Flush()
	}

	if len(st.Conditions) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Conditions:")
		conds := append([]metav1.Condition(nil), st.Conditions...)
		order := map[string]int{fwv1.ConditionReady: 0, fwv1.ConditionReconciling: 1, fwv1.ConditionStalled: 2}
		sort.SliceStable(conds, func(i, j int) bool {
			oi, ok := order[conds[i].Type]
			if !ok {
				oi = 3
			}
			oj, ok := order[conds[j].Type]
			if !ok {
				oj = 3
			}
			return oi < oj
		})
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
		for _, c := range conds {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, p.ago(c.LastTransitionTime.Time), c.Message)
		}
		_ = tw.Flush()
	}

	if hint := p.nextHint(obj); hint != "" {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Next: %s\n", hint)
	}
}

// renderFailurePolicy writes what the rollout does when its failures pass
// maxFailures, whether the controller aborted it for that, and the last
// retry.
func (p printer) renderFailurePolicy(line func(k, format string, args ...any), obj *fwv1.FirmwareRollout) {
	st, strategy := &obj.Status, &obj.Spec.Strategy
	policy := strategy.FailurePolicy
	if policy == "" {
		policy = fwv1.FailurePolicyHalt
	}
	verb := "halts"
	if policy == fwv1.FailurePolicyAbort {
		verb = "aborts (restores the previous firmware)"
	}
	if mf := strategy.MaxFailures; mf != nil {
		line("Limit", "%s after more than %s failed (failurePolicy %s)", verb, mf.String(), policy)
	} else {
		line("Limit", "none: failures never stop the rollout (failurePolicy %s, no maxFailures)", policy)
	}
	if st.AbortReason != "" {
		line("Aborted", "%s by the controller: %s", p.paint(ansiRed, st.AbortReason), st.AbortMessage)
	}
	req := obj.Annotations[fwv1.RetryAnnotation]
	switch {
	case req != "" && req != st.LastHandledRetry:
		line("Retry", "requested %s, not yet handled", retryTime(p, req))
	case st.LastHandledRetry != "":
		line("Retry", "last requested %s: the failed stations then were sent the update again", retryTime(p, st.LastHandledRetry))
	}
}

// retryTime shows a retry request's token: as a time when it is one.
func retryTime(p printer, token string) string {
	if t, err := time.Parse(time.RFC3339Nano, token); err == nil {
		return fmt.Sprintf("%s (%s)", t.UTC().Format(time.RFC3339), p.ago(t))
	}
	return fmt.Sprintf("%q", token)
}

// quoteList writes a list of packages as "a", "b".
func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func redIf(b bool) string {
	if b {
		return ansiRed
	}
	return ""
}

// renderSteps writes one line per strategy step.
func (p printer) renderSteps(w io.Writer, obj *fwv1.FirmwareRollout) {
	st := &obj.Status
	steps := obj.Spec.Strategy.Steps
	batches := map[int32]fwv1.BatchStatus{}
	for _, b := range st.Batches {
		batches[b.Step] = b
	}
	finished := st.Phase == fwv1.PhaseCompleted || st.Phase == fwv1.PhaseAborted
	what := make([]string, len(steps))
	width := 0
	for i, s := range steps {
		switch {
		case s.Batch != nil:
			what[i] = "batch " + s.Batch.String()
		case s.Analysis != nil:
			what[i] = analysisTitle(s.Analysis)
		case s.Pause != nil && s.Pause.Duration != nil:
			what[i] = "pause " + s.Pause.Duration.Duration.String()
		default:
			what[i] = "pause"
		}
		width = max(width, len(what[i]))
	}
	for i, s := range steps {
		n := int32(i + 1)
		mark := " "
		if n == st.CurrentStep && !finished {
			mark = ">"
		}
		prefix := fmt.Sprintf("  %s %2d  %-*s  ", mark, n, width, what[i])
		var rest string
		switch {
		case s.Batch != nil:
			b, ok := batches[n]
			switch {
			case ok:
				rest = p.bar(b) + "  " + batchDetail(b)
				switch {
				case b.CompletionTime != nil && b.StartTime != nil:
					rest += ", done in " + duration.HumanDuration(b.CompletionTime.Sub(b.StartTime.Time))
				case b.StartTime != nil:
					rest += ", started " + p.ago(b.StartTime.Time)
				}
			case n < st.CurrentStep || (n == st.CurrentStep && st.Phase == fwv1.PhaseCompleted):
				rest = "no stations left for this batch"
			case n == st.CurrentStep && waitsForWindow(obj):
				rest = p.paint(ansiYellow, "waiting for a batch window") + " (" + p.ago(st.NextWindow.Time) + ")"
			case n == st.CurrentStep:
				rest = "writing twins"
			default:
				rest = "not started"
			}
		case s.Analysis != nil:
			rest = p.analysisLine(obj, n)
		default:
			switch {
			case n < st.CurrentStep || (n == st.CurrentStep && finished):
				rest = "done"
			case n == st.CurrentStep && s.Pause.Duration != nil && st.StepStartTime != nil:
				end := st.StepStartTime.Add(s.Pause.Duration.Duration)
				rest = fmt.Sprintf("until %s (%s)", end.UTC().Format(time.RFC3339), p.ago(end))
			case n == st.CurrentStep && st.Phase == fwv1.PhasePaused:
				rest = p.paint(ansiYellow, "waiting for resume") + fmt.Sprintf(": `%s resume %s`", p.cmd, obj.Name)
			case n == st.CurrentStep:
				rest = "in progress"
			default:
				rest = "not started"
			}
		}
		fmt.Fprintln(w, strings.TrimRight(prefix+rest, " "))
	}
}

func batchDetail(b fwv1.BatchStatus) string {
	s := fmt.Sprintf("%d/%d updated", b.Updated, b.Size)
	if b.Failed > 0 {
		s += fmt.Sprintf(", %d failed", b.Failed)
	}
	if b.InProgress > 0 {
		s += fmt.Sprintf(", %d in progress", b.InProgress)
	}
	return s
}

// bar draws a batch as barWidth cells: updated, failed, in progress, rest.
// Every non-zero count gets at least one cell, so a single failure among
// thousands of stations stays visible.
func (p printer) bar(b fwv1.BatchStatus) string {
	cells := barCells([]int{int(b.Updated), int(b.Failed), int(b.InProgress)}, int(b.Size), barWidth)
	var sb strings.Builder
	sb.WriteByte('[')
	for i, spec := range []struct {
		r     rune
		color string
	}{{cellUpdated, ansiGreen}, {cellFailed, ansiRed}, {cellInProgress, ansiYellow}, {cellRest, ""}} {
		sb.WriteString(p.paint(spec.color, strings.Repeat(string(spec.r), cells[i])))
	}
	sb.WriteByte(']')
	return sb.String()
}

// barCells splits width cells among counts (of total) and the remainder, by
// largest remainder, giving each non-zero count at least one cell. The
// result has len(counts)+1 entries summing to width.
func barCells(counts []int, total, width int) []int {
	n := len(counts)
	cells := make([]int, n+1)
	if total <= 0 {
		cells[n] = width
		return cells
	}
	vals := append(append([]int(nil), counts...), 0)
	sum := 0
	for _, c := range counts {
		sum += c
	}
	vals[n] = max(total-sum, 0)
	if sum > total {
		total = sum
	}
	rem := make([]int, n+1)
	used := 0
	for i, v := range vals {
		cells[i] = v * width / total
		rem[i] = v * width % total
		used += cells[i]
	}
	for used < width {
		best := -1
		for i, v := range vals {
			if v > 0 && (best < 0 || rem[i] > rem[best]) {
				best = i
			}
		}
		if best < 0 {
			best = n
		}
		cells[best]++
		rem[best] = -1
		used++
	}
	for i := 0; i < n; i++ {
		if vals[i] > 0 && cells[i] == 0 {
			// take the cell from the largest other entry
			big := -1
			for j := range cells {
				if j != i && cells[j] > 1 && (big < 0 || cells[j] > cells[big]) {
					big = j
				}
			}
			if big >= 0 {
				cells[big]--
				cells[i]++
			}
		}
	}
	return cells
}

// nextHint says what a person can do next, or "".
func (p printer) nextHint(obj *fwv1.FirmwareRollout) string {
	st := &obj.Status
	name := obj.Name
	stalled := meta.FindStatusCondition(st.Conditions, fwv1.ConditionStalled)
	switch {
	case st.Phase == fwv1.PhaseCompleted || st.Phase == fwv1.PhaseAborted || st.Phase == fwv1.PhaseAborting || obj.Spec.Abort:
		return ""
	case haltedByAnalysis(obj):
		return fmt.Sprintf("check the stations the analysis queried (its measurements are in `kubectl get fwr %s -o yaml`, status.analyses); `%s resume %s` runs the analysis again; `%s abort %s` restores the previous firmware",
			name, p.cmd, name, p.cmd, name)
	case st.Phase == fwv1.PhaseHalted:
		return fmt.Sprintf("`%s stations %s --outcome Failed` shows what failed; raise maxFailures in Git, or fix them and `%s retry %s` to send the update again; `%s abort %s` restores the previous firmware",
			p.cmd, name, p.cmd, name, p.cmd, name)
	case stalled != nil && stalled.Status == metav1.ConditionTrue && stalled.Reason == fwv1.ReasonFirmwareInvalid:
		return "fix the firmware blob, signature or public key the message names (spec.firmware is immutable: new firmware needs a new FirmwareRollout); the controller checks again by itself"
	case stalled != nil && stalled.Status == metav1.ConditionTrue && stalled.Reason == fwv1.ReasonNoStations:
		return "check spec.selector against the twins in IoT Hub (device ids, tags); the controller queries again by itself"
	case waitsForWindow(obj):
		return "the next batch starts by itself when a window opens; to start it sooner, change spec.strategy.windows"
	case st.Phase == fwv1.PhasePaused && (obj.Spec.Paused || waitsForResume(obj)):
		return fmt.Sprintf("`%s resume %s` goes on", p.cmd, name)
	}
	return ""
}
