package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// argoCMFile is the shipped Argo CD customization; the tests run its Lua.
var argoCMFile = filepath.Join("..", "..", "config", "argocd", "argocd-cm.yaml")

// Keys of argocd-cm for the FirmwareRollout group/kind.
const (
	argoHealthKey  = "resource.customizations.health.firmware.stationfleet.io_FirmwareRollout"
	argoActionsKey = "resource.customizations.actions.firmware.stationfleet.io_FirmwareRollout"
)

// argoConfig is the Lua of config/argocd/argocd-cm.yaml.
type argoConfig struct {
	health    string
	discovery string
	actions   map[string]string
}

func loadArgoConfig(t *testing.T) argoConfig {
	t.Helper()
	raw, err := os.ReadFile(argoCMFile)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(raw, &cm); err != nil {
		t.Fatalf("%s: %v", argoCMFile, err)
	}
	var acts struct {
		Discovery   string `json:"discovery.lua"`
		Definitions []struct {
			Name   string `json:"name"`
			Action string `json:"action.lua"`
		} `json:"definitions"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data[argoActionsKey]), &acts); err != nil {
		t.Fatalf("%s: %s: %v", argoCMFile, argoActionsKey, err)
	}
	c := argoConfig{health: cm.Data[argoHealthKey], discovery: acts.Discovery, actions: map[string]string{}}
	for _, d := range acts.Definitions {
		c.actions[d.Name] = d.Action
	}
	for _, act := range []control{controlPause, controlResume, controlAbort, controlRetry} {
		if c.actions[string(act)] == "" {
			t.Fatalf("%s lacks the action %s", argoCMFile, act)
		}
	}
	if c.health == "" || c.discovery == "" {
		t.Fatalf("%s lacks the health check or the discovery", argoCMFile)
	}
	return c
}

// runArgoLua runs script over obj in a sandbox like Argo CD's (util/lua):
// only the package, base and table libraries, and require("os") with date
// and time on the given clock. It returns the script's result as JSON
// values.
func runArgoLua(t *testing.T, script string, obj map[string]any, now time.Time) (any, error) {
	t.Helper()
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatal(err)
		}
	}
	L.PreloadModule(lua.OsLibName, func(L *lua.LState) int {
		L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"time": func(L *lua.LState) int { L.Push(lua.LNumber(now.Unix())); return 1 },
			"date": func(L *lua.LState) int { L.Push(lua.LString(strftime(now, L.CheckString(1)))); return 1 },
		}))
		return 1
	})
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	return fromLua(L.Get(-1)), nil
}

// strftime covers the conversions the scripts may use, as Argo CD's os.date.
func strftime(t time.Time, f string) string {
	if rest, ok := strings.CutPrefix(f, "!"); ok {
		t, f = t.UTC(), rest
	}
	r := strings.NewReplacer("%Y", "2006", "%m", "01", "%d", "02", "%H", "15", "%M", "04", "%S", "05", "%X", "15:04:05")
	return t.Format(r.Replace(f))
}

// toLua converts decoded JSON as Argo CD does (numbers to numbers, arrays to
// 1-based tables).
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		tb := L.CreateTable(len(v), 0)
		for _, it := range v {
			tb.Append(toLua(L, it))
		}
		return tb
	case map[string]any:
		tb := L.CreateTable(0, len(v))
		for k, it := range v {
			tb.RawSetString(k, toLua(L, it))
		}
		return tb
	}
	panic(fmt.Sprintf("toLua: %T", v))
}

// fromLua converts a Lua value back to JSON values: a table with keys 1..n
// is an array, any other table an object.
func fromLua(v lua.LValue) any {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(v)
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return float64(v)
	case *lua.LTable:
		if n := v.MaxN(); n > 0 {
			arr := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				arr = append(arr, fromLua(v.RawGetInt(i)))
			}
			return arr
		}
		m := map[string]any{}
		v.ForEach(func(k, val lua.LValue) { m[k.String()] = fromLua(val) })
		return m
	}
	return v.String()
}

// unstructuredOf is obj as Argo CD sees it.
func unstructuredOf(t *testing.T, obj *fwv1.FirmwareRollout) map[string]any {
	t.Helper()
	obj = obj.DeepCopy()
	obj.APIVersion, obj.Kind = fwv1.GroupVersion.String(), fwv1.FirmwareRolloutKind
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// argoCase is a rollout as the controller leaves it.
type argoCase struct {
	name       string
	obj        *fwv1.FirmwareRollout
	wantHealth string
	wantMsg    string
	// wantActions lists the enabled actions, sorted.
	wantActions []string
}

func argoCases() []argoCase {
	mk := func(gen int64, spec func(*fwv1.FirmwareRollout), st fwv1.FirmwareRolloutStatus) *fwv1.FirmwareRollout {
		o := newRollout("fleet", "fw-2-0-7")
		o.Generation = gen
		if spec != nil {
			spec(o)
		}
		o.Status = st
		return o
	}
	withGen := func(st fwv1.FirmwareRolloutStatus, gen int64) fwv1.FirmwareRolloutStatus {
		st.ObservedGeneration = gen
		for i := range st.Conditions {
			st.Conditions[i].ObservedGeneration = gen
		}
		return st
	}
	pausedBySpec := progressingStatus()
	pausedBySpec.Phase = fwv1.PhasePaused
	pausedBySpec.Conditions = []metav1.Condition{pausedBySpec.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonPaused, "spec.paused is true: no twin is written until it is false (step 2 of 4)", time.Minute)}
	pausedInStep := waitingStatus("fw-2-0-7")
	pausedInStep.Conditions[1] = cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonPaused, "spec.paused is true: no twin is written until it is false (step 3 of 4)", time.Minute)
	registryErr := func(st fwv1.FirmwareRolloutStatus) fwv1.FirmwareRolloutStatus {
		msg := "retrying after an error: query stations owned by fleet/fw-2-0-7: 503 Service Unavailable"
		st.Conditions = []metav1.Condition{st.Conditions[0],
			cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonRegistryError, msg, time.Minute),
			cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonRegistryError, msg, time.Minute)}
		return st
	}
	pendingReconciling := fwv1.FirmwareRolloutStatus{ObservedGeneration: 1, Phase: fwv1.PhasePending, Conditions: []metav1.Condition{
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonRegistryError, "retrying after an error: list rollouts: timeout", time.Minute),
		cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonRegistryError, "retrying after an error: list rollouts: timeout", time.Minute)}}
	noStations := fwv1.FirmwareRolloutStatus{ObservedGeneration: 1, Phase: fwv1.PhasePending, Conditions: []metav1.Condition{
		cond(fwv1.ConditionFirmwareVerified, metav1.ConditionTrue, fwv1.ReasonVerified, "the firmware blob exists", time.Minute),
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonNoStations, "the selector matches no station in IoT Hub; checking again every 1m0s", time.Minute),
		cond(fwv1.ConditionStalled, metav1.ConditionTrue, fwv1.ReasonNoStations, "the selector matches no station in IoT Hub; checking again every 1m0s", time.Minute)}}
	// InvalidStrategy ends the reconcile with a terminal error, so
	// status.observedGeneration stays behind while Stalled is current.
	invalidStrategy := withGen(fwv1.FirmwareRolloutStatus{Phase: fwv1.PhasePending, Conditions: []metav1.Condition{
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonInvalidStrategy, "invalid percentage \"x%\"", time.Minute),
		cond(fwv1.ConditionStalled, metav1.ConditionTrue, fwv1.ReasonInvalidStrategy, "invalid percentage \"x%\"", time.Minute)}}, 2)
	invalidStrategy.ObservedGeneration = 1
	// The first reconcile of a generation failed: the conditions are
	// written for it, observedGeneration stays behind.
	failedFirst := withGen(registryErr(progressingStatus()), 2)
	failedFirst.ObservedGeneration = 1
	failedNew := withGen(fwv1.FirmwareRolloutStatus{Phase: fwv1.PhasePending, Conditions: []metav1.Condition{
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonRegistryError, "retrying after an error: query stations: 401 Unauthorized", time.Minute),
		cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonRegistryError, "retrying after an error: query stations: 401 Unauthorized", time.Minute)}}, 1)
	failedNew.ObservedGeneration = 0
	// spec.paused was cleared in a batch step; the controller has not acted.
	unpausedNotObserved := pausedBySpec

	all := []string{"abort", "pause"}
	// Retry is offered on a running rollout with failed stations (the
	// fixtures' progressing status has one).
	allRetry := []string{"abort", "pause", "retry"}
	return append([]argoCase{
		{"new, no status yet", mk(1, nil, fwv1.FirmwareRolloutStatus{}), "Progressing", "Waiting for the stationfleet controller to start the rollout", all},
		{"pending, reconciling after an error", mk(1, nil, pendingReconciling), "Progressing", "retrying after an error: list rollouts: timeout", all},
		{"pending, stalled on bad firmware", mk(1, nil, firmwareInvalidStatus()), "Degraded",
			"firmware check failed, no twin was written: blob azblob://firmware/station/2.0.7/station.bin does not exist", all},
		{"pending, stalled without stations", mk(1, nil, noStations), "Degraded", "the selector matches no station in IoT Hub; checking again every 1m0s", all},
		{"pending, stalled on a terminal error before observing", mk(2, nil, invalidStrategy), "Degraded", "invalid percentage \"x%\"", all},
		{"progressing", mk(1, nil, progressingStatus()), "Progressing", "step 2 of 4: 3 updated, 2 in progress, 1 failed, 44 pending of 50 stations", allRetry},
		{"progressing, retrying a registry error", mk(1, nil, registryErr(progressingStatus())), "Progressing",
			"retrying after an error: query stations owned by fleet/fw-2-0-7: 503 Service Unavailable", allRetry},
		{"progressing, spec changed and not yet observed", mk(2, nil, progressingStatus()), "Progressing",
			"Waiting for the stationfleet controller to act on generation 2", allRetry},
		{"progressing, first reconcile of a new generation failed", mk(2, nil, failedFirst), "Progressing",
			"retrying after an error: query stations owned by fleet/fw-2-0-7: 503 Service Unavailable", allRetry},
		{"new, first reconcile failed", mk(1, nil, failedNew), "Progressing", "retrying after an error: query stations: 401 Unauthorized", all},
		{"spec.paused cleared and not yet observed", mk(2, nil, unpausedNotObserved), "Progressing",
			"Waiting for the stationfleet controller to act on generation 2", allRetry},
		{"paused by spec.paused", mk(1, setPaused, pausedBySpec), "Suspended", "spec.paused is true: no twin is written until it is false (step 2 of 4)", []string{"abort", "resume", "retry"}},
		{"paused by spec.paused in a pause step", mk(1, setPaused, pausedInStep), "Suspended", "spec.paused is true: no twin is written until it is false (step 3 of 4)", []string{"abort", "resume", "retry"}},
		{"waiting for resume", mk(1, nil, waitingStatus("fw-2-0-7")), "Suspended", "step 3 of 4: paused until resumed (kubectl stationfleet resume fw-2-0-7)", []string{"abort", "pause", "resume", "retry"}},
		{"timed pause", mk(1, setTimedPause, timedPauseStatus()), "Suspended", "step 3 of 4: pause until 2026-03-14T16:04:26Z", allRetry},
		{"waiting for resume, retrying a registry error", mk(1, nil, registryErr(waitingStatus("fw-2-0-7"))), "Suspended",
			"retrying after an error: query stations owned by fleet/fw-2-0-7: 503 Service Unavailable", []string{"abort", "pause", "resume", "retry"}},
		{"timed pause, retrying a registry error", mk(1, setTimedPause, registryErr(timedPauseStatus())), "Suspended",
			"retrying after an error: query stations owned by fleet/fw-2-0-7: 503 Service Unavailable", allRetry},
		{"waiting for a batch window", mk(1, setWindows, outsideWindowStatus()), "Suspended",
			"step 2 of 4: waiting for a batch window: the next opens at 2026-03-14T22:00:00Z (UTC), in 6h50m", all},
		{"waiting for a batch window, retrying a registry error", mk(1, setWindows, registryErr(outsideWindowStatus())), "Suspended",
			"retrying after an error: query stations owned by fleet/fw-2-0-7: 503 Service Unavailable", all},
		{"halted", mk(1, nil, haltedStatus()), "Degraded",
			"4 stations failed, more than maxFailures allows (2); no further batch is written. Abort to restore the previous firmware, or delete the rollout", []string{"abort", "retry"}},
		{"halted, abort not yet observed", mk(2, setAbort, haltedStatus()), "Progressing", "Waiting for the stationfleet controller to act on generation 2", nil},
		{"aborting", mk(2, setAbort, withGen(abortingStatus(), 2)), "Progressing", "restoring the previous firmware on the stations this rollout wrote", nil},
		{"aborted", mk(2, setAbort, withGen(abortedStatus(), 2)), "Degraded", "aborted: the previous firmware is restored on 6 stations", nil},
		{"completed", mk(1, nil, completedStatus()), "Healthy", "49 of 50 stations updated, 1 failed, 0 skipped", nil},
	}, append(retryArgoCases(mk), analysisArgoCases(mk)...)...)
}

func TestArgoCDHealth(t *testing.T) {
	cfg := loadArgoConfig(t)
	for _, tc := range argoCases() {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := runArgoLua(t, cfg.health, unstructuredOf(t, tc.obj), testNow)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(map[string]any{"status": tc.wantHealth, "message": tc.wantMsg}))
		})
	}
}

// TestArgoCDActionsMatchTheCLI checks, for every state, that Argo CD offers
// exactly the actions the CLI allows, that an action refuses what the CLI
// refuses, and that it changes the object exactly as the CLI's merge patch.
func TestArgoCDActionsMatchTheCLI(t *testing.T) {
	cfg := loadArgoConfig(t)
	for _, tc := range argoCases() {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u := unstructuredOf(t, tc.obj)
			got, err := runArgoLua(t, cfg.discovery, u, testNow)
			g.Expect(err).NotTo(HaveOccurred())
			var enabled []string
			for name, a := range got.(map[string]any) {
				if a.(map[string]any)["disabled"] != true {
					enabled = append(enabled, name)
				}
			}
			sort.Strings(enabled)
			g.Expect(enabled).To(Equal(tc.wantActions), "enabled actions")

			for _, act := range []control{controlPause, controlResume, controlAbort, controlRetry} {
				plan, cliErr := planControl(act, tc.obj, "kubectl stationfleet", testNow)
				g.Expect(cliErr == nil).To(Equal(contains(enabled, string(act))), "%s: the CLI and Argo CD disagree on whether it applies (CLI: %v)", act, cliErr)
				res, luaErr := runArgoLua(t, cfg.actions[string(act)], unstructuredOf(t, tc.obj), testNow)
				if cliErr != nil {
					g.Expect(luaErr).To(HaveOccurred(), "%s: the action should refuse like the CLI: %v", act, cliErr)
					g.Expect(refusalReason(t, luaErr.Error(), "the rollout ")).To(Equal(refusalReason(t, cliErr.Error(), "rollout "+tc.obj.Name+" ")),
						"%s: Argo CD and the CLI refuse for different reasons", act)
					continue
				}
				g.Expect(luaErr).NotTo(HaveOccurred(), "%s", act)
				want := mergePatch(jsonValue(t, u), jsonValue(t, plan.patch))
				g.Expect(jsonValue(t, res)).To(Equal(want), "%s: Argo CD's result differs from the CLI's patch", act)
			}
		})
	}
}

// refusalReason is the reason of a refusal: the message after prefix ("the
// rollout " in Argo CD, "rollout NAME " in the CLI), up to the hint that
// follows "; ".
func refusalReason(t *testing.T, msg, prefix string) string {
	t.Helper()
	msg, _, _ = strings.Cut(msg, "\n") // gopher-lua appends a stack trace
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		t.Fatalf("refusal %q does not start with %q", msg, prefix)
	}
	reason, _, _ := strings.Cut(rest, "; ")
	return reason
}

// setTimedPause makes step 3 of newRollout a one-hour pause (the fixtures'
// timed pause started five minutes before testNow and ends at 16:04:26).
func setTimedPause(o *fwv1.FirmwareRollout) {
	o.Spec.Strategy.Steps[2].Pause = &fwv1.PauseStep{Duration: &metav1.Duration{Duration: time.Hour}}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// jsonValue round-trips v through JSON, so values compare by content.
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// mergePatch applies an RFC 7386 JSON merge patch.
func mergePatch(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	out := map[string]any{}
	for k, v := range d {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}
