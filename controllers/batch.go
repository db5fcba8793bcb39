package controllers

import (
	"context"
	"fmt"
	"time"

	kerrors "k8s.io/apimachinery/pkg/util/errors"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// claim is the result of one station's write in a batch.
type claim struct {
	i       int // position in the station view
	s       rules.Station
	written bool   // this rollout owns it now (written now or before a restart)
	skipped string // the active rollout that owns it instead
	// skippedUID is that rollout's UID.
	skippedUID string
	offPath    bool // CUPS saw it on a package off firmware.upgradeFrom: not written
	err        error
}

// writeBatch writes the rollout's firmware and ownership into up to need
// unwritten stations, in spread order, skipping those another active rollout
// claimed meanwhile. Each write is conditional on the twin's ETag, and a
// station already owned by this rollout is never written again. It returns
// when to come back.
func (r *FirmwareRolloutReconciler) writeBatch(ctx context.Context, s *rolloutScope, step, need int) (time.Duration, error) {
	v := s.view
	need = min(need, r.Options.MaxWritesPerReconcile)
	own := newOwnership(s, step)
	written := 0
	seen := map[string]string{} // stations found off the upgrade path: their package
	defer func() { r.noteReported(s.obj, seen) }()
	var errs []error
	for len(v.unwritten) > 0 && written < need && len(errs) == 0 {
		n := min(need-written, len(v.unwritten))
		chunk := v.unwritten[:n]
		v.unwritten = v.unwritten[n:]
		claims := make([]claim, len(chunk))
		fanOut(len(chunk), r.Options.WriteConcurrency, func(j int) error {
			claims[j] = r.claim(ctx, s, chunk[j], v.station(chunk[j]), nil, own)
			return nil
		})
		for _, c := range claims {
			if c.err != nil {
				errs = append(errs, fmt.Errorf("write twin %s: %w", c.s.ID, c.err))
				v.unwritten = append(v.unwritten, c.i)
				continue
			}
			if r.applyClaim(s, c) {
				written++
			}
			if c.offPath {
				seen[c.s.ID] = c.s.Package
			}
		}
	}
	// The cached selection is kept: the stations written here are in the
	// owned view, which loadStations lays over it. Querying the whole
	// selection again after every MaxWritesPerReconcile writes made a
	// rollout's cost grow with the square of the fleet (DESIGN.md section 9).
	if len(errs) > 0 {
		return 0, kerrors.NewAggregate(errs)
	}
	if written >= need && len(v.unwritten) > 0 && need == r.Options.MaxWritesPerReconcile {
		return time.Millisecond, nil // more of this batch to write
	}
	return r.requeueWhileInFlight(s), nil
}

// newOwnership is the ownership record the batch of step writes.
func newOwnership(s *rolloutScope, step int) twin.Ownership {
	return twin.Ownership{Rollout: s.key(), UID: s.uid(), Batch: step, Model: s.obj.Spec.Firmware.Model,
		MaxUpdateAttempts: s.params().MaxUpdateAttempts, UpgradeFrom: s.obj.Spec.Firmware.UpgradeFrom,
		BakeSeconds: int(s.params().BakeTime.Round(time.Second) / time.Second),
		WrittenAt:   s.now.UTC().Truncate(time.Second)}
}

// claim writes the firmware and ownership own into the twin of the
// station st at position i of the view, unless another active rollout owns
// it, this one already does, or the CUPS server saw it on a package off
// the rollout's upgrade path (checked on the fresh twin: the view's may be
// older than the station's last poll). Given the twin t (a query page's),
// it decides on t and writes with t's ETag; when t is stale (412) it reads
// the twin again and decides anew (TwinRegistry.UpdateKnown). Without t it
// reads the twin first. It does not touch the view: it may run beside
// another goroutine that does.
func (r *FirmwareRolloutReconciler) claim(ctx context.Context, s *rolloutScope, i int, st rules.Station, t *twin.Twin, own twin.Ownership) claim {
	c := claim{i: i, s: st}
	fw := desiredFirmware(s.obj)
	mutate := func(t *twin.Twin) (*twin.Patch, error) {
		c.written, c.skipped, c.skippedUID, c.offPath = false, "", "", false
		if o := t.Ownership; o != nil {
			if o.UID == own.UID {
				c.written = true // written before a restart: never twice
				c.s.Batch, c.s.WrittenAt = o.Batch, o.WrittenAt
				return nil, nil
			}
			if rules.Holds(s.active, o.UID) {
				c.skipped, c.skippedUID = o.Rollout, o.UID
				return nil, nil
			}
		}
		if ob := t.Observation; ob != nil && rules.OffUpgradePath(true, ob.Package, fw.Package, own.UpgradeFrom) {
			c.offPath, c.s.Package, c.s.Seen = true, rules.Intern(ob.Package), true
			return nil, nil
		}
		// The time of this write, not of the pass: a pass that writes a
		// big batch slowly (a busy manager, a slow IoT Hub) must not start
		// its last stations' progress deadline before they were written.
		own.WrittenAt = r.Now().UTC().Truncate(time.Second)
		c.written = true
		c.s.Batch, c.s.WrittenAt = own.Batch, own.WrittenAt
		return claimPatch(t, fw, own, s.byUID, s.now), nil
	}
	if t != nil {
		_, c.err = r.Registry.UpdateKnown(ctx, t, mutate)
	} else {
		_, c.err = r.Registry.Update(ctx, c.s.ID, mutate)
	}
	return c
}

// applyClaim lays a successful claim over the station view; it reports
// whether the rollout owns the station now.
func (r *FirmwareRolloutReconciler) applyClaim(s *rolloutScope, c claim) bool {
	v := s.view
	switch {
	case c.skipped != "":
		v.set(c.i, c.s, rules.Outcome{State: fwv1.OutcomeSkipped, Reason: string(fwv1.SkipOwnedElsewhere), Message: "owned by the active rollout " + c.skipped})
		return false
	case c.offPath:
		v.set(c.i, c.s, rules.Classify(c.s, s.uid(), s.active, s.params()))
		return false
	case c.written:
		c.s.OwnerUID, c.s.OwnerName = s.uid(), s.key()
		v.set(c.i, c.s, rules.Evaluate(c.s, s.params()))
		r.rememberOwned(s.obj, v.all[c.i])
		twinWrites.Inc()
		if r.Cache != nil {
			r.Cache.Invalidate(c.s.ID)
		}
		return true
	}
	return false
}

// desiredFirmware is the four firmware fields the rollout writes.
func desiredFirmware(obj *fwv1.FirmwareRollout) twin.Firmware {
	crc := uint32(obj.Spec.Firmware.KeyChecksum)
	return twin.Firmware{
		Package:     obj.Spec.Firmware.Package,
		URL:         obj.Spec.Firmware.URL,
		Signature:   obj.Spec.Firmware.Signature,
		KeyChecksum: &crc,
	}
}
