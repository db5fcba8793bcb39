package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// cgroupMemoryMax is where cgroup v2 says how much memory the container
// may use.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// applyMemoryLimit sets the Go runtime's soft memory limit from
// --memory-limit: "auto" (the default) is 90% of the container's memory
// limit (cgroup v2 memory.max) when it has one and GOMEMLIMIT is not set;
// "off" sets none; a quantity ("900Mi") sets that. The limit makes the
// garbage collector work harder as the heap nears it, instead of letting a
// large, mostly live heap grow to twice its size before collecting (GOGC):
// a complement to keeping the views small, not a substitute (the bench
// measures without it). It returns the limit set, 0 for none.
func applyMemoryLimit(flagValue, cgroupFile string) (int64, error) {
	limit, err := memoryLimit(flagValue, os.Getenv("GOMEMLIMIT") != "", cgroupFile)
	if err != nil || limit == 0 {
		return 0, err
	}
	debug.SetMemoryLimit(limit)
	return limit, nil
}

// memoryLimit is the limit --memory-limit=flagValue asks for, 0 for none.
func memoryLimit(flagValue string, envSet bool, cgroupFile string) (int64, error) {
	switch v := strings.TrimSpace(flagValue); v {
	case "off", "0":
		return 0, nil
	case "", "auto":
		if envSet { // the runtime applied GOMEMLIMIT itself
			return 0, nil
		}
		b, err := os.ReadFile(cgroupFile)
		if err != nil {
			return 0, nil // not in a cgroup v2 container: no limit to follow
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%s: unexpected content %q", cgroupFile, s)
		}
		return n / 10 * 9, nil
	default:
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 || q.Value() == math.MaxInt64 {
			return 0, fmt.Errorf("--memory-limit=%s: want auto, off or a quantity such as 900Mi", v)
		}
		return q.Value(), nil
	}
}
