package proc

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestProcessRestart starts a shell that prints its run and sleeps, kills it
// and starts it again: the log holds both runs, CurrentLog only the second.
func TestProcessRestart(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	p := New(t, "sleeper", sh, nil, nil)
	p.Ready = func() bool { return bytes.Contains(p.CurrentLog(), []byte("up\n")) }
	for run := 1; run <= 2; run++ {
		p.Args = []string{"-c", "echo up; echo run" + string(rune('0'+run)) + "; exec sleep 60"}
		p.Start()
		if !p.Alive() {
			t.Fatalf("run %d not alive after Start", run)
		}
		p.Kill()
		if p.Alive() {
			t.Fatalf("run %d alive after Kill", run)
		}
		if err := p.ExitErr(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("run %d ExitErr = %v, want signal: killed", run, err)
		}
	}
	if p.Runs() != 2 || !p.LogContains("run1") || !p.LogContains("run2") {
		t.Errorf("runs %d, log:\n%s", p.Runs(), p.LogTail(10))
	}
	if cur := string(p.CurrentLog()); strings.Contains(cur, "run1") || !strings.HasPrefix(cur, "=== run 2 at ") {
		t.Errorf("current log is not the second run's:\n%s", cur)
	}
}
