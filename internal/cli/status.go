package cli

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// ansiClear moves the cursor home and clears the screen, for redrawing the
// status in place on a terminal.
const ansiClear = "\x1b[H\x1b[2J"

func (a *app) statusCommand() *cobra.Command {
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status ROLLOUT [-w]",
		Short: "Show a rollout's progress, batch by batch",
		Long: `status shows a rollout's phase, a progress bar per batch step (# updated,
x failed, ~ in progress, . not yet reported), the latest failures with their
reasons, the conditions, and what to do next.

With -w it follows the rollout until it stops: Completed (exit 0), waiting
for a person while paused (exit 0), or Halted, Aborted or Stalled (exit 2).`,
		Example: `  ` + a.commandName() + ` status fw-2-0-7 -n lorawan -w`,
		Args:    exactArgs(1, "ROLLOUT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return fmt.Errorf("--interval must be positive")
			}
			return a.runStatus(cmd.Context(), args[0], watch, interval)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "Follow the rollout until it completes, halts, is aborted or waits for a person.")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "How often -w reads the rollout.")
	return cmd
}

func (a *app) runStatus(ctx context.Context, name string, watch bool, interval time.Duration) error {
	c, ns, err := a.kubeClient()
	if err != nil {
		return err
	}
	tty := a.IsTerminal(a.Streams.Out)
	lastRV := ""
	for first := true; ; first = false {
		obj, err := a.getRollout(ctx, c, ns, name)
		if err != nil {
			if !first && apierrors.IsNotFound(err) {
				return fmt.Errorf("FirmwareRollout %s/%s was deleted", ns, name)
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if obj.ResourceVersion != lastRV {
			lastRV = obj.ResourceVersion
			var buf bytes.Buffer
			p := printer{now: a.Now(), color: tty, cmd: a.commandName()}
			p.renderStatus(&buf, obj)
			switch {
			case watch && tty:
				fmt.Fprint(a.Streams.Out, ansiClear)
			case watch && !first:
				fmt.Fprintf(a.Streams.Out, "\n--- %s\n", a.Now().UTC().Format(time.RFC3339))
			}
			_, _ = a.Streams.Out.Write(buf.Bytes())
		}
		if !watch {
			return nil
		}
		if done, err := stopped(obj); done {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// stopped reports whether a followed rollout has stopped moving without a
// person, and the error (exit code 2) when it stopped badly. A change the
// controller has not yet acted on (a newer generation, a resume request not
// yet handled) is not a stop.
func stopped(obj *fwv1.FirmwareRollout) (bool, error) {
	st := &obj.Status
	if st.ObservedGeneration < obj.Generation {
		return false, nil
	}
	bad := func(what string) error {
		msg := what
		if c := meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady); c != nil && c.Message != "" {
			msg += ": " + c.Message
		}
		return &exitError{code: 2, err: fmt.Errorf("rollout %s/%s %s", obj.Namespace, obj.Name, msg)}
	}
	switch st.Phase {
	case fwv1.PhaseCompleted:
		return true, nil
	case fwv1.PhaseHalted:
		if req := obj.Annotations[fwv1.RetryAnnotation]; req != "" && req != st.LastHandledRetry {
			return false, nil // a retry the controller has not handled yet
		}
		return true, bad("halted")
	case fwv1.PhaseAborted:
		return true, bad("was aborted")
	case fwv1.PhasePaused:
		if obj.Spec.Paused {
			return true, nil
		}
		if waitsForResume(obj) {
			req := obj.Annotations[fwv1.ResumeAnnotation]
			return req == "" || req == st.LastHandledResume, nil
		}
	}
	if c := meta.FindStatusCondition(st.Conditions, fwv1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
		return true, bad("is stalled")
	}
	return false, nil
}
