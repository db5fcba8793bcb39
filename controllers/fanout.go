package controllers

import (
	"sync"

	"golang.org/x/sync/errgroup"
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
