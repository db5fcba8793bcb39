package controllers

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
	kerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// fanOut calls fn(i) for i in [0, n) with at most limit calls at once, and
// returns every error they returned (not only the first: each names its
// station, and a partial batch is still recorded).
func fanOut(n, limit int, fn func(i int) error) []error {
	var (
		g    errgroup.Group
		mu   sync.Mutex
		errs []error
	)
	g.SetLimit(max(limit, 1))
	for i := range n {
		g.Go(func() error {
			if err := fn(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait() // the calls return nil: their errors are in errs
	return errs
}

// updateTwins makes one ETag-guarded write to each station at the
// positions todo of the view, at most WriteConcurrency at once. mutate
// sees the station's fresh twin and returns the patch and what it did, or
// a nil patch and "" to leave the twin alone (the reason to write it no
// longer holds). It returns what each write did ("" when it wrote nothing
// or failed) and the errors, each naming the station and what was being
// done ("record the failure of").
func (r *FirmwareRolloutReconciler) updateTwins(ctx context.Context, s *rolloutScope, todo []int, doing string,
	mutate func(t *twin.Twin) (*twin.Patch, string)) ([]string, error) {
	did := make([]string, len(todo))
	errs := fanOut(len(todo), r.Options.WriteConcurrency, func(j int) error {
		id := s.view.all[todo[j]].ID
		_, err := r.Registry.Update(ctx, id, func(t *twin.Twin) (*twin.Patch, error) {
			var p *twin.Patch
			p, did[j] = mutate(t)
			return p, nil
		})
		if err != nil {
			did[j] = ""
			return fmt.Errorf("%s station %s: %w", doing, id, err)
		}
		return nil
	})
	return did, kerrors.NewAggregate(errs)
}
