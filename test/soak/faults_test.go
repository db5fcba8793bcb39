package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"time"

	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
)

// allOps are the operations the emulator serves (what a fault with an
// empty Op matches).
var allOps = []hubsim.Op{hubsim.OpGetTwin, hubsim.OpPatchTwin, hubsim.OpReplaceTwin, hubsim.OpGetDevice,
	hubsim.OpPutDevice, hubsim.OpDeleteDevice, hubsim.OpQuery}

// faultKind is one entry of the IoT Hub fault schedule.
type faultKind struct {
	name  string
	fault hubsim.Fault
	// conflicts, instead of a fault, has a concurrent writer change this
	// many random twins just before their next write (ETag conflicts).
	conflicts int
}

// schedule is the cycle of IoT Hub faults, one per tick. Counts are small
// enough that the system gets through each within a tick.
var schedule = []faultKind{
	{name: "429 Too Many Requests, Retry-After 1s (any op)", fault: hubsim.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second, Count: 12}},
	{name: "500 Internal Server Error (twin PATCH)", fault: hubsim.Fault{Op: hubsim.OpPatchTwin, Status: http.StatusInternalServerError, Count: 8}},
	{name: "ETag conflicts from a concurrent writer", conflicts: 25},
	{name: "503 Service Unavailable (query)", fault: hubsim.Fault{Op: hubsim.OpQuery, Status: http.StatusServiceUnavailable, Count: 4}},
	{name: "added latency 400ms (any op)", fault: hubsim.Fault{Latency: 400 * time.Millisecond, Count: 40}},
	{name: "503 Service Unavailable (twin GET)", fault: hubsim.Fault{Op: hubsim.OpGetTwin, Status: http.StatusServiceUnavailable, Count: 10}},
	{name: "dropped connection (any op)", fault: hubsim.Fault{Drop: true, Count: 10}},
	{name: "429 Too Many Requests, Retry-After 2s (twin PATCH)", fault: hubsim.Fault{Op: hubsim.OpPatchTwin, Status: http.StatusTooManyRequests, RetryAfter: 2 * time.Second, Count: 6}},
	{name: "dropped connection (query)", fault: hubsim.Fault{Op: hubsim.OpQuery, Drop: true, Count: 3}},
}

// injector runs the schedule against the emulator and counts what each
// fault actually hit. One fault is armed at a time, so every request of a
// matching operation while it is armed consumes one use of it: the hits are
// the growth of the emulator's request counters, capped at the fault's
// count.
type injector struct {
	hub      *hubsim.Server
	stations int
	armed    map[string]int
	hit      map[string]int64
}

func newInjector(hub *hubsim.Server, stations int) *injector {
	return &injector{hub: hub, stations: stations, armed: map[string]int{}, hit: map[string]int64{}}
}

func (in *injector) requests(op hubsim.Op) int64 {
	if op != "" {
		return in.hub.Requests(op)
	}
	var n int64
	for _, o := range allOps {
		n += in.hub.Requests(o)
	}
	return n
}

// run arms the schedule's faults in turn, one per tick, for d.
func (in *injector) run(ctx context.Context, d time.Duration) {
	const tick = 1500 * time.Millisecond
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		k := schedule[i%len(schedule)]
		in.armed[k.name]++
		if k.conflicts > 0 {
			for range k.conflicts {
				id := embedded.DeviceID(embedded.BaseEUI + uint64(rand.IntN(in.stations)))
				in.hub.InjectConcurrentWrite(id, map[string]any{"site": map[string]any{"rev": i}}, nil)
			}
			in.hit[k.name] += int64(k.conflicts)
		}
		var before int64
		var remove func()
		if k.conflicts == 0 {
			before = in.requests(k.fault.Op)
			remove = in.hub.InjectFault(k.fault)
		}
		select {
		case <-ctx.Done():
		case <-time.After(tick):
		}
		if remove != nil {
			remove()
			in.hit[k.name] += min(int64(k.fault.Count), in.requests(k.fault.Op)-before)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// summary lists each fault with how often it was armed and what it hit.
func (in *injector) summary() []string {
	var out []string
	for _, k := range schedule {
		unit := "requests hit"
		if k.conflicts > 0 {
			unit = "twins changed under the controller"
		}
		out = append(out, fmt.Sprintf("%-50s armed %2d times, %4d %s", k.name, in.armed[k.name], in.hit[k.name], unit))
	}
	sort.Strings(out)
	return out
}
