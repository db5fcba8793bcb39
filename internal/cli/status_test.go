package cli

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

func TestStatusGolden(t *testing.T) {
	kc := kubeconfig(t)
	tests := []struct {
		name   string
		paused bool
		status func(name string) fwv1.FirmwareRolloutStatus
		args   []string
	}{
		{name: "progressing", status: func(string) fwv1.FirmwareRolloutStatus { return progressingStatus() }},
		{name: "waiting-for-resume", status: waitingStatus},
		{name: "halted", status: func(string) fwv1.FirmwareRolloutStatus { return haltedStatus() }},
		{name: "completed", status: func(string) fwv1.FirmwareRolloutStatus { return completedStatus() }},
		{name: "firmware-invalid", status: func(string) fwv1.FirmwareRolloutStatus { return firmwareInvalidStatus() }},
		{name: "plugin-paused", paused: true, status: func(string) fwv1.FirmwareRolloutStatus {
			st := progressingStatus()
			st.Phase = fwv1.PhasePaused
			msg := "spec.paused is true: no twin is written until it is false (step 2 of 4)"
			st.Conditions = append(st.Conditions[:1], cond(fwv1.ConditionReady, "False", fwv1.ReasonPaused, msg, time.Minute))
			return st
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := testEnv.Namespace(t)
			name := "fw-2-0-7"
			obj := newRollout(ns, name)
			obj.Spec.Paused = tt.paused
			createRollout(t, obj, tt.status(name))

			opts := Options{}
			if strings.HasPrefix(tt.name, "plugin") {
				opts.Name = "/usr/local/bin/kubectl-stationfleet"
			}
			r := runCLIWith(t, context.Background(), opts, "status", name, "--kubeconfig", kc, "-n", ns)
			g.Expect(r.code).To(Equal(0), r.errOut)
			golden(t, "status-"+tt.name+".golden", strings.ReplaceAll(r.out, ns, "NAMESPACE"))
		})
	}
}

func TestStatusColorsOnlyOnATerminal(t *testing.T) {
	g := NewWithT(t)
	kc := kubeconfig(t)
	ns := testEnv.Namespace(t)
	createRollout(t, newRollout(ns, "r"), progressingStatus())

	r := runCLIWith(t, context.Background(), Options{IsTerminal: func(io.Writer) bool { return true }}, "status", "r", "--kubeconfig", kc, "-n", ns)
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.out).To(ContainSubstring(ansiGreen + "##########"))
	g.Expect(r.out).To(ContainSubstring(ansiRed + "xxxxx"))

	r = runCLI(t, "status", "r", "--kubeconfig", kc, "-n", ns)
	g.Expect(r.out).NotTo(ContainSubstring("\x1b["))
}

func TestStatusWatchFollowsUntilStopped(t *testing.T) {
	g := NewWithT(t)
	kc := kubeconfig(t)
	ns := testEnv.Namespace(t)
	obj := createRollout(t, newRollout(ns, "w"), progressingStatus())

	done := make(chan result, 1)
	go func() {
		done <- runCLI(t, "status", "w", "-w", "--interval", "20ms", "--kubeconfig", kc, "-n", ns)
	}()
	// The watch keeps going while the rollout progresses...
	g.Consistently(done, "300ms").ShouldNot(Receive())
	// ...and stops with exit 0 once it completed.
	base := obj.DeepCopy()
	obj.Status = completedStatus()
	obj.Status.ObservedGeneration = obj.Generation
	g.Expect(testEnv.Client.Status().Patch(context.Background(), obj, client.MergeFrom(base))).To(Succeed())
	var r result
	g.Eventually(done, "10s").Should(Receive(&r))
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.out).To(ContainSubstring("Phase:      Progressing"))
	g.Expect(r.out).To(ContainSubstring("\n--- 2026-03-14T15:09:26Z\n"))
	g.Expect(r.out).To(ContainSubstring("Phase:      Completed"))
	g.Expect(strings.Count(r.out, "Rollout:")).To(Equal(2), "a snapshot is printed only when the rollout changed")
}

func TestStatusWatchExitCodes(t *testing.T) {
	kc := kubeconfig(t)
	tests := []struct {
		name     string
		status   fwv1.FirmwareRolloutStatus
		wantCode int
		wantErr  string
	}{
		{"halted", haltedStatus(), 2, "halted: 4 stations failed"},
		{"stalled on firmware", firmwareInvalidStatus(), 2, "is stalled: firmware check failed"},
		{"waiting for resume", waitingStatus("x"), 0, ""},
		{"completed", completedStatus(), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := testEnv.Namespace(t)
			createRollout(t, newRollout(ns, "x"), tt.status)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := runCLIWith(t, ctx, Options{}, "status", "x", "-w", "--interval", "20ms", "--kubeconfig", kc, "-n", ns)
			g.Expect(ctx.Err()).NotTo(HaveOccurred(), "the watch should have stopped by itself")
			g.Expect(r.code).To(Equal(tt.wantCode), r.errOut)
			if tt.wantErr != "" {
				g.Expect(r.errOut).To(ContainSubstring(tt.wantErr))
			}
		})
	}
}

func TestStatusNotFoundSaysWhatToDo(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	r := runCLI(t, "status", "nope", "--kubeconfig", kubeconfig(t), "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring(`FirmwareRollout "nope" not found in namespace "` + ns + `": list them with`))
}
