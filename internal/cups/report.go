package cups

import (
	"slices"
	"time"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// ReportPoll is what one poll adds to the station's Report (its health
// after the update, twin.Report): set only while the station is owned by a
// rollout with a bake time that has not counted it Failed.
type ReportPoll struct {
	// Rollout is the owning rollout's UID.
	Rollout string
	// Package is the rollout's package (the twin's desired package).
	Package string
	// Bake is the rollout's bake time.
	Bake time.Duration
	// Reported is the package the station reported in this poll.
	Reported string
	// At is when the station polled.
	At time.Time
	// Restart is true when the answer sent the station something (URIs,
	// credentials, firmware) or failed: the station's next poll is its
	// reaction to that answer, so it starts a new sequence.
	Restart bool
}

// reportPoll returns the ReportPoll of a request, nil when no rollout with
// a bake time owns the station or its rollout counted it Failed.
func reportPoll(t *twin.Twin, req *Request, now time.Time) *ReportPoll {
	own := t.Ownership
	if own == nil || own.BakeSeconds <= 0 || own.Failed != "" || own.UID == "" || t.CUPS.Package == "" {
		return nil
	}
	return &ReportPoll{Rollout: own.UID, Package: t.CUPS.Package, Bake: time.Duration(own.BakeSeconds) * time.Second,
		Reported: req.Package, At: now.UTC()}
}

// rollingBack reports whether a station that asks for the update reports
// its previous package after it reported the rollout's: within the bake
// time, or after a fallback already recorded. It is not sent the update
// again (refusal RolledBack).
func rollingBack(t *twin.Twin, req *Request, now time.Time) bool {
	own := t.Ownership
	if own == nil || own.BakeSeconds <= 0 || own.Failed != "" || req.Package != own.Previous.Package || t.Observation == nil {
		return false
	}
	r := t.Observation.Report
	if r == nil || r.Rollout != own.UID || r.Package != t.CUPS.Package {
		return false
	}
	return r.Back == req.Package || now.Before(r.At.Add(time.Duration(own.BakeSeconds)*time.Second))
}

// nextReport returns the Report after the poll p (r itself when the poll
// changes nothing; never r modified):
//
//   - the first poll that reports the rollout's package starts a Report;
//   - within the bake time, a later poll on the package joins the current
//     sequence of polls (or starts a new one after an answer that sent
//     something or failed); one on another package is recorded as Back;
//   - after the bake time, once Back is recorded, or for a poll older than
//     the latest recorded, nothing changes.
func nextReport(r *twin.Report, p *ReportPoll) *twin.Report {
	if p == nil {
		return r
	}
	if r == nil || r.Rollout != p.Rollout || r.Package != p.Package {
		if p.Reported != p.Package {
			return r
		}
		return &twin.Report{Rollout: p.Rollout, Package: p.Package, At: p.At, Polls: []time.Time{p.At}, RestartNext: p.Restart}
	}
	if r.Back != "" || !p.At.Before(r.At.Add(p.Bake)) || !p.At.After(r.At) {
		// After the bake time or the fallback, nothing more to learn; a
		// poll older than the report (two writes of the station that ran
		// concurrently, the older retried last) changes nothing.
		return r
	}
	n := r.Clone()
	if p.Reported != p.Package {
		at := p.At
		n.Back, n.BackAt = p.Reported, &at
		return n
	}
	if k := len(n.Polls); k > 0 && !p.At.After(n.Polls[k-1]) {
		// Older than the latest poll recorded (concurrent writes applied
		// out of order): put it in its place in the sequence.
		i, found := slices.BinarySearchFunc(n.Polls, p.At, func(a, b time.Time) int { return a.Compare(b) })
		if found || i == 0 {
			return r
		}
		n.Polls = slices.Insert(n.Polls, i, p.At)
		if len(n.Polls) > twin.MaxReportPolls {
			n.Polls = n.Polls[len(n.Polls)-twin.MaxReportPolls:]
		}
		return n
	}
	if n.RestartNext {
		n.Polls, n.Restarts = nil, n.Restarts+1
	}
	n.Polls = append(n.Polls, p.At)
	if len(n.Polls) > twin.MaxReportPolls {
		n.Polls = n.Polls[len(n.Polls)-twin.MaxReportPolls:]
	}
	n.RestartNext = p.Restart
	return n
}
