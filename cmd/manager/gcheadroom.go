package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The garbage collector's headroom (--gc-headroom).
//
// With GOGC=100 the runtime collects whenever the heap has grown by its
// live size. The manager's live heap is small when its fleet is (about
// 8 MiB serving CUPS for a few dozen stations), so under a poll storm it
// collected several times a second, and each cycle's concurrent mark,
// which takes a quarter of the CPU and makes allocating requests assist,
// landed in the CUPS answers' tail: issue 18's row 1p measured the
// open-loop p99 at half the bare handler's saturated rate at 11-14 ms
// against the bare handler's 5-9 ms, and about 5 ms with the collector
// off.
//
// The headroom is a floor under how far the heap may grow past its live
// size: the GC percent is raised to 100 x headroom / live when that is
// more than GOGC's. A large heap (a million-station rollout, 270 MiB live)
// keeps GOGC's doubling, so the headroom costs at most its own size in
// memory; the soft memory limit (--memory-limit) still bounds the whole.

// gcPercentMax bounds the percent the headroom sets (a nearly empty heap).
const gcPercentMax = 10_000

// gcHeadroom is the headroom --gc-headroom=flagValue asks for, 0 for none.
// GOGC in the environment turns it off: the runtime applied the user's
// choice.
func gcHeadroom(flagValue string, envSet bool) (int64, error) {
	switch v := strings.TrimSpace(flagValue); v {
	case "off", "0":
		return 0, nil
	default:
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 || q.Value() == math.MaxInt64 {
			return 0, fmt.Errorf("--gc-headroom=%s: want off or a quantity such as 64Mi", v)
		}
		if envSet {
			return 0, nil
		}
		return q.Value(), nil
	}
}

// gcPercentFor is the GC percent that lets a heap of live bytes grow by at
// least headroom bytes, and never by less than base percent.
func gcPercentFor(live, headroom int64, base int) int {
	if live <= 0 {
		return gcPercentMax
	}
	p := int(min(int64(gcPercentMax), (headroom*100+live-1)/live))
	return max(p, base)
}

// gcTuner keeps the GC percent at gcPercentFor of the live heap.
type gcTuner struct {
	headroom int64
	base     int // GOGC's percent when the tuner started
	current  int
	sample   []metrics.Sample
}

func newGCTuner(headroom int64) *gcTuner {
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	base := int(gogc[0].Value.Uint64())
	return &gcTuner{headroom: headroom, base: base, current: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// tune sets the percent for the live heap the last collection measured,
// when it differs from the current one by more than a tenth (so that a
// steady heap does not reset the collector's pacing every cycle). It
// returns the percent in force. The live heap a concurrent cycle measures
// counts what was allocated while it marked, so under load the percent
// errs low (towards GOGC's), never high.
func (g *gcTuner) tune() int {
	metrics.Read(g.sample)
	if g.sample[0].Value.Kind() != metrics.KindUint64 {
		return g.current
	}
	want := gcPercentFor(int64(g.sample[0].Value.Uint64()), g.headroom, g.base)
	if d := want - g.current; d*10 > g.current || -d*10 > g.current {
		debug.SetGCPercent(want)
		g.current = want
	}
	return g.current
}

// run tunes after every collection until ctx ends, then puts GOGC's
// percent back. After every collection, not on a timer: a heap that grows
// fast from small (a large rollout's first read) must not keep the small
// heap's percent for long, or its next goal would be several times its
// size.
func (g *gcTuner) run(ctx context.Context) {
	cycles := make(chan struct{}, 1)
	armCycleHook(ctx, cycles)
	defer debug.SetGCPercent(g.base)
	for {
		g.tune()
		select {
		case <-ctx.Done():
			return
		case <-cycles:
		}
	}
}

// cycleHook is garbage each collection finds: its finalizer signals the
// tuner and arms a new one, until ctx ends.
type cycleHook struct {
	ctx    context.Context
	cycles chan<- struct{}
	_      [16]byte // a finalizer needs an object of its own, not a tiny-alloc block
}

func armCycleHook(ctx context.Context, cycles chan<- struct{}) {
	runtime.SetFinalizer(&cycleHook{ctx: ctx, cycles: cycles}, func(h *cycleHook) {
		if h.ctx.Err() != nil {
			return
		}
		select {
		case h.cycles <- struct{}{}:
		default: // the tuner has not taken the last one yet
		}
		armCycleHook(h.ctx, h.cycles)
	})
}

// startGCHeadroom applies --gc-headroom: it returns the headroom set (0
// for none) after starting the tuner, which runs until ctx ends.
func startGCHeadroom(ctx context.Context, flagValue string) (int64, error) {
	h, err := gcHeadroom(flagValue, os.Getenv("GOGC") != "")
	if err != nil || h == 0 {
		return 0, err
	}
	go newGCTuner(h).run(ctx)
	return h, nil
}
