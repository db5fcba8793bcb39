package main

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOpenLoopCountsLateStarts: an open-loop command sends exactly its
// rate times its window, every answer checked, and reports how late the
// requests left (part of each latency, so never above the p99); a closed
// loop has no schedule to be late for.
func TestOpenLoopCountsLateStarts(t *testing.T) {
	srv := httptest.NewServer(bareHandler())
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	p := newConnPool(target, [][]byte{[]byte(`{"router":"0016c001ff10a235"}`)})

	open := p.run(loadCmd{Target: target, Conc: 8, Seconds: 0.5, Rate: 400})
	if open.Failures != 0 || open.Requests != 200 {
		t.Fatalf("open loop at 400/s for 0.5 s: %d answered, %d failed (%s); want 200 and 0", open.Requests, open.Failures, open.FirstErr)
	}
	if open.LateP99us <= 0 || open.LateP99us > open.P99us {
		t.Errorf("late starts p99 %.0f µs with a latency p99 of %.0f µs: want above 0 and at most the p99", open.LateP99us, open.P99us)
	}

	closed := p.run(loadCmd{Target: target, Conc: 8, Seconds: 0.3})
	if closed.Failures != 0 || closed.Requests == 0 || closed.LateP99us != 0 {
		t.Errorf("closed loop: %d answered, %d failed, late starts %.0f µs; want some, none, 0", closed.Requests, closed.Failures, closed.LateP99us)
	}
}
