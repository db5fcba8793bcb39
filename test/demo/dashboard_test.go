package demo_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/demo"
	"github.com/stationfleet/stationfleet/internal/syncbuf"
	"github.com/stationfleet/stationfleet/internal/testutil/browser"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// TestDemoDashboardInBrowser opens the URL `make demo` prints in headless
// Chromium: the page lists the demo's rollout and follows it, without a
// reload, through several progress values to Completed; the rollout's page
// then shows its 50 stations and its progress over time.
func TestDemoDashboardInBrowser(t *testing.T) {
	g := NewWithT(t)
	out := &syncbuf.Buffer{}
	o := demo.DefaultOptions()
	o.PollInterval = time.Second
	o.CUPSAddr = proc.FreeAddr(t)
	o.DashboardAddr = proc.FreeAddr(t)
	o.StateDir = t.TempDir()
	o.Out = out
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := demo.Run(ctx, o)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("the demo did not stop within a minute")
		}
	})
	re := regexp.MustCompile(`dashboard: +(http://` + regexp.QuoteMeta(o.DashboardAddr) + `/\?token=[0-9a-f]+)`)
	link := ""
	g.Eventually(func() string {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			link = m[1]
		}
		return link
	}, 3*time.Minute, 100*time.Millisecond).ShouldNot(BeEmpty(), "the demo prints the dashboard's URL")

	bctx := browser.Start(t)
	row := `#rollouts tr[data-rollout="default/demo-2-0-7"]`
	browser.Do(t, bctx, "open the demo's dashboard", chromedp.Navigate(link), chromedp.WaitVisible(browser.CSS(row)),
		// Note every progress the page shows, and that it is never reloaded.
		browser.Void(chromedp.Evaluate[bool](`(() => { window.seen = new Set(); window.notReloaded = true;
			setInterval(() => { const e = document.querySelector('`+row+` .progress-text'); if (e) seen.add(e.textContent); }, 20); return true; })()`)))
	g.Expect(browser.Get(t, bctx, "count the rollouts", browser.Count("#rollouts tbody tr"))).To(Equal(1))
	browser.GetWithin(t, bctx, 3*time.Minute, "wait for Completed", browser.WaitText(row+" .badge", "Completed"))
	browser.Screenshot(t, bctx, "demo-overview")
	seen := browser.Get(t, bctx, "progress seen", chromedp.Evaluate[[]string](`window.notReloaded ? [...window.seen] : null`))
	g.Expect(seen).NotTo(BeNil(), "the page was reloaded")
	g.Expect(len(seen)).To(BeNumerically(">=", 3), "the page showed %v: it did not follow the rollout", seen)
	g.Expect(seen).To(ContainElement("45/50"))

	browser.Do(t, bctx, "open the rollout's page",
		chromedp.Navigate("http://"+o.DashboardAddr+"/rollouts/default/demo-2-0-7"),
		browser.WaitText("#stations-count", "50 of 50 stations shown"))
	g.Expect(browser.Get(t, bctx, "count Failed", browser.Count(`#stations-table tbody tr[data-outcome="Failed"]`))).To(Equal(5))
	g.Expect(browser.Get(t, bctx, "count the chart's series", browser.Count(`#progress-chart path[data-series]`))).To(Equal(3))
	browser.Screenshot(t, bctx, "demo-rollout")
	browser.Do(t, bctx, "filter Failed", chromedp.Click(browser.CSS(`button[data-outcome="Failed"]`)),
		browser.WaitText("#stations-count", "5 of 50 stations shown"))
	browser.Screenshot(t, bctx, "demo-rollout-failed")
}
