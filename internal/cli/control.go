package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// control is one of the imperative rollout commands.
type control string

// The imperative commands.
const (
	controlPause  control = "pause"
	controlResume control = "resume"
	controlAbort  control = "abort"
	controlRetry  control = "retry"
)

// argoTrackingAnnotation marks objects an Argo CD Application manages.
const argoTrackingAnnotation = "argocd.argoproj.io/tracking-id"

// conflictRetries is how often a command re-reads and re-decides after the
// rollout changed between its read and its patch.
const conflictRetries = 5

// controlPlan is what a command will change and what to tell the user.
type controlPlan struct {
	// patch is the JSON merge patch (without the resourceVersion guard).
	patch map[string]any
	// done is printed after the patch succeeded.
	done string
	// gitField names the spec field to change in Git as well, for rollouts
	// Argo CD manages.
	gitField string
}

// planControl decides what act does to obj, or says why it does not apply.
// cmd is how the user invokes the CLI (for hints); now stamps a resume.
//
// The Argo CD actions in config/argocd/argocd-cm.yaml apply the same rules
// and refuse with the same words: a refusal is "rollout NAME " + the reason,
// then "; " and a hint that may differ (the CLI names its commands); the
// Argo CD action says "the rollout " + the same reason. argocd_test.go
// checks both sides over every state the controller produces.
func planControl(act control, obj *fwv1.FirmwareRollout, cmd string, now time.Time) (*controlPlan, error) {
	name := obj.Name
	phase := obj.Status.Phase
	follow := fmt.Sprintf("follow it with `%s status %s -w`", cmd, name)
	refuse := func(reason, hint string) error {
		if hint == "" {
			return fmt.Errorf("rollout %s %s", name, reason)
		}
		return fmt.Errorf("rollout %s %s; %s", name, reason, hint)
	}
	switch act {
	case controlPause:
		switch {
		case phase == fwv1.PhaseCompleted || phase == fwv1.PhaseAborted:
			return nil, refuse(fmt.Sprintf("is %s: there is nothing left to pause", phase), "")
		case obj.Spec.Abort || phase == fwv1.PhaseAborting:
			return nil, refuse("is being aborted: pausing cannot stop the restore", follow)
		case phase == fwv1.PhaseHalted:
			return nil, refuse("is Halted (more failures than maxFailures allows): it writes no further batch anyway",
				fmt.Sprintf("`%s abort %s` restores the previous firmware, or delete it", cmd, name))
		case obj.Spec.Paused:
			return nil, refuse("is already paused (spec.paused is true)", fmt.Sprintf("resume it with `%s resume %s`", cmd, name))
		}
		return &controlPlan{
			patch:    map[string]any{"spec": map[string]any{"paused": true}},
			done:     fmt.Sprintf("rollout %s paused: no further twin is written; stations already written keep going. Resume with `%s resume %s`", name, cmd, name),
			gitField: "spec.paused: true",
		}, nil

	case controlResume:
		switch {
		case phase == fwv1.PhaseCompleted:
			return nil, refuse("is Completed: there is nothing to resume", "")
		case phase == fwv1.PhaseAborted:
			return nil, refuse("is Aborted: an abort cannot be undone", "create a new FirmwareRollout to roll the firmware out again")
		case obj.Spec.Abort || phase == fwv1.PhaseAborting:
			return nil, refuse("is being aborted: an abort cannot be undone", follow)
		case haltedByAnalysis(obj):
			return &controlPlan{
				patch: map[string]any{"metadata": map[string]any{"annotations": map[string]any{fwv1.ResumeAnnotation: now.UTC().Format(time.RFC3339Nano)}}},
				done:  fmt.Sprintf("rollout %s resumed: its failed analysis runs again; %s", name, follow),
			}, nil
		case phase == fwv1.PhaseHalted:
			return nil, refuse("is Halted (more failures than maxFailures allows) and cannot be resumed",
				fmt.Sprintf("see `%s stations %s --outcome Failed`, then raise maxFailures in Git, `%s retry %s` to send the update again to the failed stations, or `%s abort %s` to restore the previous firmware", cmd, name, cmd, name, cmd, name))
		}
		waiting := waitsForResume(obj)
		if !obj.Spec.Paused && !waiting {
			return nil, resumeRefusal(obj, refuse, follow, fmt.Sprintf("pause it with `%s pause %s`", cmd, name))
		}
		patch := map[string]any{}
		if obj.Spec.Paused {
			patch["spec"] = map[string]any{"paused": false}
		}
		if waiting {
			patch["metadata"] = map[string]any{"annotations": map[string]any{fwv1.ResumeAnnotation: now.UTC().Format(time.RFC3339Nano)}}
		}
		p := &controlPlan{patch: patch, done: fmt.Sprintf("rollout %s resumed; %s", name, follow)}
		if obj.Spec.Paused {
			p.gitField = "spec.paused: false"
		}
		return p, nil

	case controlAbort:
		switch {
		case phase == fwv1.PhaseCompleted:
			return nil, refuse("is Completed: every step is done, so there is nothing to abort",
				"to go back, publish the previous firmware and roll it out with a new FirmwareRollout")
		case phase == fwv1.PhaseAborted:
			return nil, refuse("is already Aborted", "")
		case obj.Spec.Abort || phase == fwv1.PhaseAborting:
			return nil, refuse("is already being aborted (spec.abort is true)", follow)
		}
		return &controlPlan{
			patch:    map[string]any{"spec": map[string]any{"abort": true}},
			done:     fmt.Sprintf("rollout %s is aborting: the previous firmware is restored on every station it wrote; %s", name, follow),
			gitField: "spec.abort: true",
		}, nil

	case controlRetry:
		return planRetry(obj, refuse, follow, cmd, now)
	}
	return nil, fmt.Errorf("unknown command %q", act)
}

// planRetry decides what `retry` does to obj: it stamps the retry
// annotation, which makes the controller send the update again to every
// station the rollout counts Failed, with their attempts counted afresh. A
// running rollout (Progressing, Paused, Halted) with failures may be
// retried; a finished or aborting one may not.
func planRetry(obj *fwv1.FirmwareRollout, refuse func(reason, hint string) error, follow, cmd string, now time.Time) (*controlPlan, error) {
	name, st := obj.Name, &obj.Status
	switch {
	case st.Phase == fwv1.PhaseCompleted:
		return nil, refuse("is Completed: a finished rollout sends nothing again",
			fmt.Sprintf("to update its failed stations (`%s stations %s --outcome Failed`), roll the firmware out to them with a new FirmwareRollout", cmd, name))
	case st.Phase == fwv1.PhaseAborted:
		return nil, refuse("is Aborted: an abort cannot be undone", "create a new FirmwareRollout to roll the firmware out again")
	case obj.Spec.Abort || st.Phase == fwv1.PhaseAborting:
		return nil, refuse("is being aborted: an abort cannot be undone", follow)
	case st.Phase != fwv1.PhaseProgressing && st.Phase != fwv1.PhasePaused && st.Phase != fwv1.PhaseHalted:
		shown := string(st.Phase)
		if shown == "" {
			shown = "not yet reconciled"
		}
		return nil, refuse(fmt.Sprintf("has not started (phase %s): no station has failed", shown), follow)
	case st.Phase != fwv1.PhaseHalted && st.Failed == 0:
		return nil, refuse("has no failed station: there is nothing to retry", follow)
	}
	done := fmt.Sprintf("rollout %s: retry requested: the update is sent again to its %d failed stations, their attempts counted afresh", name, st.Failed)
	if st.Phase == fwv1.PhaseHalted {
		done += "; the rollout goes on once its failures are within maxFailures"
	}
	return &controlPlan{
		patch: map[string]any{"metadata": map[string]any{"annotations": map[string]any{fwv1.RetryAnnotation: now.UTC().Format(time.RFC3339Nano)}}},
		done:  done + "; " + follow,
	}, nil
}

// resumeRefusal says why a rollout that is neither paused by spec.paused nor
// waiting in a pause step without duration cannot be resumed. It decides by
// the current step, not by the conditions: a registry error replaces the
// Ready condition's reason but not the step the rollout waits in.
func resumeRefusal(obj *fwv1.FirmwareRollout, refuse func(reason, hint string) error, follow, pauseHint string) error {
	st := &obj.Status
	if st.Phase != fwv1.PhasePaused {
		shown := string(st.Phase)
		if shown == "" {
			shown = "not yet reconciled"
		}
		return refuse(fmt.Sprintf("is not paused (phase %s): there is nothing to resume", shown), pauseHint)
	}
	if p := currentPause(obj); p != nil && p.Duration != nil {
		hint := follow
		if st.StepStartTime != nil {
			hint = fmt.Sprintf("it ends at %s; %s", st.StepStartTime.Add(p.Duration.Duration).UTC().Format(time.RFC3339), follow)
		}
		return refuse(fmt.Sprintf("is in a timed pause step (step %d of %d), which ends by itself", st.CurrentStep, len(obj.Spec.Strategy.Steps)), hint)
	}
	if waitsForWindow(obj) {
		return refuse(windowRefusal(obj), "to start it sooner, change spec.strategy.windows (in Git, for a rollout Argo CD manages)")
	}
	// Paused in a step that is no pause: spec.paused was cleared and the
	// controller has not acted on it yet.
	return refuse("is no longer paused: spec.paused is false and the current step is not a pause step", follow)
}

// currentPause returns the pause of the step the rollout is in, or nil when
// that step is a batch or the rollout is not within its steps.
func currentPause(obj *fwv1.FirmwareRollout) *fwv1.PauseStep {
	i := int(obj.Status.CurrentStep)
	steps := obj.Spec.Strategy.Steps
	if i < 1 || i > len(steps) {
		return nil
	}
	return steps[i-1].Pause
}

// waitsForResume reports whether the rollout waits in a pause step without
// duration: phase Paused and the current step is `pause: {}`. The step
// decides, not the Ready condition, whose reason is RegistryError while the
// controller retries an error, or Paused while spec.paused is true.
func waitsForResume(obj *fwv1.FirmwareRollout) bool {
	if obj.Status.Phase != fwv1.PhasePaused {
		return false
	}
	p := currentPause(obj)
	return p != nil && p.Duration == nil
}

func (a *app) controlCommand(act control, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:     string(act) + " ROLLOUT",
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  %s %s fw-2-0-7 -n lorawan", a.commandName(), act),
		Args:    exactArgs(1, "ROLLOUT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runControl(cmd.Context(), act, args[0])
		},
	}
}

func (a *app) pauseCommand() *cobra.Command {
	return a.controlCommand(controlPause, "Pause a rollout: write no further twin until resumed",
		`pause sets spec.paused: no further station twin is written until the rollout
is resumed; stations already written keep going and their outcomes are still
reported. It refuses a rollout that is finished, halted, aborting or already
paused. For a rollout managed from Git, set spec.paused there too, or a sync
reverts it.`)
}

func (a *app) resumeCommand() *cobra.Command {
	return a.controlCommand(controlResume, "Resume a paused rollout",
		`resume clears spec.paused and, when the rollout waits in a pause step without
duration, sets the `+fwv1.ResumeAnnotation+` annotation to the
current time so it moves past that step. On a rollout halted by a failed
analysis step it sets the annotation too: the analysis runs again, from
scratch. It refuses a rollout that is not paused; a timed pause step ends by
itself.`)
}

func (a *app) retryCommand() *cobra.Command {
	return a.controlCommand(controlRetry, "Send the update again to a rollout's failed stations",
		`retry sets the `+fwv1.RetryAnnotation+` annotation to the current
time: the controller sends the update again to every station the rollout
counted Failed (and still owns), with their attempts counted afresh and a new
progress deadline, and a Halted rollout goes on once its failures are within
maxFailures. Fix what made them fail first (a station's keys, its model, its
network). It refuses a rollout that completed, is aborted or has no failed
station. The annotation is not in Git, so Argo CD leaves it alone.`)
}

func (a *app) abortCommand() *cobra.Command {
	return a.controlCommand(controlAbort, "Abort a rollout and restore the previous firmware",
		`abort sets spec.abort: the rollout stops and restores, on every station it
wrote, the firmware fields the station had before. An abort cannot be undone.
It refuses a rollout that completed or is already aborted.`)
}

// runControl reads the rollout, decides and patches, re-deciding when the
// rollout changed in between (the patch carries the resourceVersion read).
func (a *app) runControl(ctx context.Context, act control, name string) error {
	c, ns, err := a.kubeClient()
	if err != nil {
		return err
	}
	plan, obj, err := a.applyControl(ctx, c, act, ns, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.Streams.Out, plan.done)
	if _, argo := obj.Annotations[argoTrackingAnnotation]; argo && plan.gitField != "" {
		fmt.Fprintf(a.Streams.ErrOut, "warning: Argo CD manages %s/%s: set %s in Git too, or a sync reverts it\n", ns, name, plan.gitField)
	}
	return nil
}

// planRefusal is planControl's refusal: the rules say no for the rollout's
// state (the dashboard shows it as such, apart from the API server's
// refusals).
type planRefusal struct{ err error }

func (e *planRefusal) Error() string { return e.err.Error() }
func (e *planRefusal) Unwrap() error { return e.err }

// applyControl reads the rollout ns/name, decides and patches it,
// re-deciding when the rollout changed in between. It returns the plan
// carried out and the rollout as read before the patch.
func (a *app) applyControl(ctx context.Context, c client.Client, act control, ns, name string) (*controlPlan, *fwv1.FirmwareRollout, error) {
	for attempt := 0; ; attempt++ {
		obj, err := a.getRollout(ctx, c, ns, name)
		if err != nil {
			return nil, nil, err
		}
		plan, err := planControl(act, obj, a.commandName(), a.Now())
		if err != nil {
			return nil, nil, &planRefusal{err}
		}
		guarded := map[string]any{}
		for k, v := range plan.patch {
			guarded[k] = v
		}
		md, _ := guarded["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
		}
		md["resourceVersion"] = obj.ResourceVersion
		guarded["metadata"] = md
		body, err := json.Marshal(guarded)
		if err != nil {
			return nil, nil, fmt.Errorf("encode patch: %w", err)
		}
		err = c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, body))
		switch {
		case err == nil:
			return plan, obj, nil
		case apierrors.IsConflict(err) && attempt < conflictRetries:
			continue // changed meanwhile: decide again on the new state
		case apierrors.IsForbidden(err):
			return nil, nil, fmt.Errorf("not allowed to %s %s/%s: ask for patch on firmwarerollouts.firmware.stationfleet.io: %w", act, ns, name, err)
		case apierrors.IsInvalid(err):
			return nil, nil, fmt.Errorf("the API server refused to %s %s/%s: %w", act, ns, name, err)
		}
		return nil, nil, fmt.Errorf("%s %s/%s: %w", act, ns, name, err)
	}
}
