package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/syncbuf"
	"github.com/stationfleet/stationfleet/internal/testutil/browser"
	"github.com/stationfleet/stationfleet/internal/twin"
)

var dashboardURL = regexp.MustCompile(`http://127\.0\.0\.1:\d+/\?token=[0-9a-f]+`)

// startDashboard runs `stationfleet dashboard` with args on a free loopback
// port, as a user would, until the test ends, and returns the URL it printed
// and its error stream (warnings and the log of actions).
func startDashboard(t *testing.T, now func() time.Time, args ...string) (string, *syncbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	opts := Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: errOut}, Now: now,
		IsTerminal: func(io.Writer) bool { return false }}
	done := make(chan int, 1)
	go func() { done <- Execute(ctx, opts, append([]string{"dashboard", "--address", "127.0.0.1:0"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("dashboard exited %d: %s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the dashboard did not stop within 10s of its context ending")
		}
	})
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if u := dashboardURL.FindString(out.String()); u != "" {
			return u, errOut
		}
		select {
		case code := <-done:
			t.Fatalf("dashboard exited %d before serving: %s%s", code, out.String(), errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("the dashboard printed no URL within a minute: %q %q", out.String(), errOut.String())
	return "", nil
}

// dashboardFixture is a namespace with three rollouts and the twins of the
// first one's stations in the IoT Hub emulator.
type dashboardFixture struct {
	ns, adminKubeconfig, connFile, caFile, endpoint string
	rollout                                         *fwv1.FirmwareRollout
	now                                             func() time.Time
}

func newDashboardFixture(t *testing.T) dashboardFixture {
	t.Helper()
	start := time.Now()
	// The fixtures' statuses are stamped relative to testNow; the
	// dashboard's clock runs on from there.
	now := func() time.Time { return testNow.Add(time.Since(start)) }
	ns := testEnv.Namespace(t)
	obj := newRollout(ns, "fw-2-0-7")
	obj.Spec.Strategy.ProgressDeadline = &metav1.Duration{Duration: 20 * time.Minute}
	obj = createRollout(t, obj, progressingStatus())
	createRollout(t, newRollout(ns, "fw-2-0-6"), completedStatus())
	createRollout(t, newRollout(ns, "fw-2-0-8-lab"), waitingStatus("fw-2-0-8-lab"))

	hub := hubsim.Start(t, hubsim.Options{})
	uid := string(obj.UID)
	mine := func(batch int, written time.Duration) *twin.Ownership {
		return &twin.Ownership{Rollout: ns + "/fw-2-0-7", UID: uid, Batch: batch, Model: "linux", WrittenAt: testNow.Add(-written)}
	}
	seen := func(pkg string, served int, refusal string) *twin.Observation {
		o := &twin.Observation{LastSeen: testNow.Add(-time.Minute), Station: "2.0.6(linux/std) 2026-01-01 00:00:00", Model: "linux",
			Package: pkg, Keys: []uint32{testKeyCRC}, ServedPackage: "2.0.7", ServedRollout: uid, UpdatesServed: served}
		if refusal != "" {
			o.Refusal, o.RefusedPackage, o.RefusedRollout = refusal, "2.0.7", uid
			if refusal != twin.RefusalNotApplied {
				o.ServedPackage, o.ServedRollout, o.UpdatesServed = "", "", 0
			}
		}
		return o
	}
	tags := func(ring, region string) map[string]any { return map[string]any{"ring": ring, "region": region} }
	seedStation(t, hub, "00000000000000A1", tags("canary", "eu-west"), mine(1, 40*time.Minute), seen("2.0.7", 1, ""))
	seedStation(t, hub, "001122FFFE334455", tags("canary", "eu-west"), mine(2, 15*time.Minute), seen("2.0.6", 0, twin.RefusalKeyMismatch))
	seedStation(t, hub, "00000000000000A3", tags("canary", "us-east"), mine(2, 15*time.Minute), seen("2.0.6", 3, twin.RefusalNotApplied))
	seedStation(t, hub, "00000000000000A4", tags("canary", "us-east"), mine(2, 5*time.Minute), seen("2.0.6", 1, ""))
	seedStation(t, hub, "00000000000000A5", tags("canary", "eu-west"), mine(2, 5*time.Minute), seen("2.0.7", 1, ""))
	seedStation(t, hub, "00000000000000B1", tags("canary", "eu-west"), nil, seen("2.0.6", 0, ""))
	seedStation(t, hub, "00000000000000B2", tags("canary", "us-east"), nil, nil)
	// Owned by the rollout although its tags no longer match the selector.
	seedStation(t, hub, "00000000000000C1", tags("prod", "us-east"), mine(2, 5*time.Minute), seen("2.0.7", 2, ""))

	connFile := filepath.Join(t.TempDir(), "iothub-connection-string")
	if err := os.WriteFile(connFile, []byte(hub.ConnectionString()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dashboardFixture{ns: ns, adminKubeconfig: kubeconfig(t), connFile: connFile, caFile: hub.CAFile(), endpoint: hub.Addr(), rollout: obj, now: now}
}

// viewerKubeconfig is a user who may read the rollouts of ns and not patch
// them, as the API server's RBAC decides.
func viewerKubeconfig(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	c := testEnv.Client
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollout-viewer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{fwv1.GroupVersion.Group}, Resources: []string{"firmwarerollouts"}, Verbs: []string{"get", "list", "watch"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollout-viewer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dashboard-viewer"}}}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
	user, err := testEnv.Environment.AddUser(envtest.User{Name: "dashboard-viewer"}, nil)
	if err != nil {
		t.Fatalf("add envtest user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// the API server and the IoT Hub emulator: the overview lists the
// rollouts, follows a status change without a reload, pauses a rollout
// after a confirmation, and a rollout's page shows its stations, filtered
// by outcome and by tag, and its progress chart.
func TestDashboardInBrowser(t *testing.T) {
	g := NewWithT(t)
	f := newDashboardFixture(t)
	link, terminal := startDashboard(t, f.now, "--kubeconfig", f.adminKubeconfig, "-n", f.ns,
		"--iothub-connection-string-file", f.connFile, "--iothub-ca-file", f.caFile, "--iothub-endpoint", f.endpoint)
	base := strings.SplitN(link, "/?", 2)[0]
	ctx := browser.Start(t)
	key := f.ns + "/fw-2-0-7"
	row := fmt.Sprintf(`#rollouts tr[data-rollout=%q]`, key)

	// The overview lists the three rollouts with their phase and progress.
	browser.Do(t, ctx, "open the overview", chromedp.Navigate(link), chromedp.WaitVisible(browser.CSS(row)))
	g.Expect(browser.Get(t, ctx, "count the rollouts", browser.Count("#rollouts tbody tr"))).To(Equal(3))
	g.Expect(browser.Get(t, ctx, "phase", chromedp.Text(browser.CSS(row+" .badge")))).To(Equal("Progressing"))
	g.Expect(browser.Get(t, ctx, "progress", chromedp.Text(browser.CSS(row+" .progress-text")))).To(Equal("3/50"))
	steps := browser.Get(t, ctx, "steps", chromedp.Evaluate[string](fmt.Sprintf(`[...document.querySelectorAll('%s .step')].map(e => e.title).join('\n')`, row)))
	g.Expect(steps).To(ContainSubstring("step 2: batch 10% — 2/5 updated, 1 failed, 2 in progress"))
	g.Expect(steps).To(ContainSubstring("step 3: pause — not started"))
	g.Expect(browser.Get(t, ctx, "location", chromedp.Location())).To(Equal(base+"/"), "the token leaves the address bar once it is in the cookie")
	browser.Screenshot(t, ctx, "dashboard-overview")

	// The status changes: the page follows without a reload.
	browser.Do(t, ctx, "mark the page", browser.Void(chromedp.Evaluate[bool](`window.notReloaded = true`)))
	obj := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(f.rollout), obj)).To(Succeed())
	obj.Status.Updated, obj.Status.InProgress, obj.Status.Pending, obj.Status.Progress = 10, 4, 35, "10/50"
	obj.Status.Batches[1].Updated, obj.Status.Batches[1].InProgress = 4, 0
	g.Expect(testEnv.Client.Status().Update(context.Background(), obj)).To(Succeed())
	browser.Do(t, ctx, "see the new progress", browser.WaitText(row+" .progress-text", "10/50"))
	g.Expect(browser.Get(t, ctx, "reloaded?", chromedp.Evaluate[bool](`window.notReloaded === true`))).To(BeTrue(), "the page reloaded to show the change")

	// A rollout created appears, one deleted disappears, still without a
	// reload.
	createRollout(t, newRollout(f.ns, "fw-2-0-9"), fwv1.FirmwareRolloutStatus{})
	gone := &fwv1.FirmwareRollout{}
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "fw-2-0-6"}, gone)).To(Succeed())
	g.Expect(testEnv.Client.Delete(context.Background(), gone)).To(Succeed())
	browser.Do(t, ctx, "see the new rollout and not the deleted one",
		browser.WaitJS(fmt.Sprintf(`!!document.querySelector('#rollouts tr[data-rollout=%q]') && !document.querySelector('#rollouts tr[data-rollout=%q]')`,
			f.ns+"/fw-2-0-9", f.ns+"/fw-2-0-6")))
	g.Expect(browser.Get(t, ctx, "the new rollout's phase", chromedp.Text(browser.CSS(fmt.Sprintf(`#rollouts tr[data-rollout=%q] .badge`, f.ns+"/fw-2-0-9"))))).To(Equal("Pending"))
	g.Expect(browser.Get(t, ctx, "reloaded?", chromedp.Evaluate[bool](`window.notReloaded === true`))).To(BeTrue(), "the page reloaded")

	// Pause, confirmed in the dialog: the API server holds spec.paused.
	pause := fmt.Sprintf(`button[data-action="pause"][data-rollout=%q]`, key)
	browser.Do(t, ctx, "click pause", chromedp.Click(browser.CSS(pause)), chromedp.WaitVisible(browser.CSS(`#confirm[open]`)))
	g.Expect(browser.Get(t, ctx, "dialog title", chromedp.Text(browser.CSS(`#confirm-title`)))).To(Equal("Pause rollout " + key + "?"))
	browser.Do(t, ctx, "confirm", chromedp.Click(browser.CSS(`#confirm-ok`)), browser.WaitText(`#flash.ok`, "rollout fw-2-0-7 paused"))
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(f.rollout), obj)).To(Succeed())
	g.Expect(obj.Spec.Paused).To(BeTrue(), "the click did not pause the rollout")
	g.Expect(terminal.String()).To(MatchRegexp(`"msg"="dashboard action done" "rollout"="`+key+`" "action"="pause"`), "the terminal logs the action")
	browser.Do(t, ctx, "the pause button greys out", browser.Void(chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s').disabled`, pause))))

	// Resume, confirmed: spec.paused is cleared.
	resume := fmt.Sprintf(`button[data-action="resume"][data-rollout=%q]`, key)
	browser.Do(t, ctx, "resume",
		browser.WaitJS(fmt.Sprintf(`!document.querySelector('%s').disabled`, resume)),
		chromedp.Click(browser.CSS(resume)), chromedp.WaitVisible(browser.CSS(`#confirm[open]`)),
		chromedp.Click(browser.CSS(`#confirm-ok`)), browser.WaitText(`#flash.ok`, "rollout fw-2-0-7 resumed"))
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(f.rollout), obj)).To(Succeed())
	g.Expect(obj.Spec.Paused).To(BeFalse(), "the click did not resume the rollout")

	// Cancel in the dialog changes nothing.
	browser.Do(t, ctx, "abort, then cancel",
		chromedp.Click(browser.CSS(fmt.Sprintf(`button[data-action="abort"][data-rollout=%q]`, key))),
		chromedp.WaitVisible(browser.CSS(`#confirm[open]`)),
		chromedp.Click(browser.CSS(`#confirm-cancel`)),
		chromedp.WaitNotPresent(browser.CSS(`#confirm[open]`)))
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(f.rollout), obj)).To(Succeed())
	g.Expect(obj.Spec.Abort).To(BeFalse(), "cancel aborted the rollout")

	// The rollout's page: its stations from the twins, filtered by outcome
	// and by tag, and the progress chart.
	browser.Do(t, ctx, "open the rollout's page",
		chromedp.Navigate(base+"/rollouts/"+f.ns+"/fw-2-0-7"),
		chromedp.WaitVisible(browser.CSS(`#stations-table tbody tr`)))
	g.Expect(browser.Get(t, ctx, "count the stations", browser.Count("#stations-table tbody tr"))).To(Equal(8))
	g.Expect(browser.Get(t, ctx, "chart", chromedp.Evaluate[string](`[...document.querySelectorAll('#progress-chart path[data-series]')].map(p => p.dataset.series).join(',')`))).
		To(Equal("updated,failed,inProgress"))
	browser.Screenshot(t, ctx, "dashboard-rollout")
	browser.Do(t, ctx, "filter Failed", chromedp.Click(browser.CSS(`button[data-outcome="Failed"]`)), browser.WaitText(`#stations-count`, "2 of 8 stations shown"))
	g.Expect(browser.Get(t, ctx, "count Failed", browser.Count(`#stations-table tbody tr[data-outcome="Failed"]`))).To(Equal(2))
	browser.Do(t, ctx, "filter region us-east",
		browser.Void(chromedp.Evaluate[bool](`(() => { const s = document.querySelector('select[data-tag="region"]'); s.value = 'us-east'; s.dispatchEvent(new Event('change')); return true; })()`)),
		browser.WaitText(`#stations-count`, "1 of 8 stations shown"))
	g.Expect(browser.Get(t, ctx, "the failed station of us-east", browser.Count(`#stations-table tbody tr[data-station="00000000000000A3"]`))).To(Equal(1))
	browser.Screenshot(t, ctx, "dashboard-rollout-filtered")
}

// TestDashboardShowsRBACRefusal: a user who may read rollouts but not patch
// them clicks abort; the page shows the API server's 403 and the rollout is
// untouched.
func TestDashboardShowsRBACRefusal(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	obj := createRollout(t, newRollout(ns, "fw-2-0-7"), progressingStatus())
	start := time.Now()
	link, _ := startDashboard(t, func() time.Time { return testNow.Add(time.Since(start)) }, "--kubeconfig", viewerKubeconfig(t, ns), "-n", ns,
		"--iothub-connection-string-file", filepath.Join(t.TempDir(), "missing"))
	ctx := browser.Start(t)
	key := ns + "/fw-2-0-7"
	browser.Do(t, ctx, "abort as a viewer",
		chromedp.Navigate(link),
		chromedp.Navigate(strings.SplitN(link, "/?", 2)[0]+"/rollouts/"+ns+"/fw-2-0-7"),
		chromedp.WaitVisible(browser.CSS(`#summary`)),
		// The page re-renders as its live feed arrives: clicked from its
		// script, not by a node id that a re-render may have replaced.
		browser.ClickJS(fmt.Sprintf(`button[data-action="abort"][data-rollout=%q]`, key)),
		chromedp.WaitVisible(browser.CSS(`#confirm[open]`)),
		browser.ClickJS(`#confirm-ok`),
		chromedp.WaitVisible(browser.CSS(`#flash.error`)))
	msg := browser.Get(t, ctx, "the refusal", chromedp.Text(browser.CSS(`#flash`)))
	g.Expect(msg).To(HavePrefix("Forbidden (403): not allowed to abort " + key))
	g.Expect(msg).To(ContainSubstring(`User "dashboard-viewer" cannot patch resource "firmwarerollouts"`))
	g.Expect(browser.Get(t, ctx, "why no stations", chromedp.Text(browser.CSS(`#stations-error`)))).To(ContainSubstring("no IoT Hub connection"))
	browser.Screenshot(t, ctx, "dashboard-refused")
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	g.Expect(obj.Spec.Abort).To(BeFalse())
}

// TestDashboardRefusesOtherSites: the dashboard acts with the user's
// credentials, so a request without this run's token, from another origin
// or under another host name (DNS rebinding) changes nothing.
func TestDashboardRefusesOtherSites(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	obj := createRollout(t, newRollout(ns, "fw-2-0-7"), progressingStatus())
	link, _ := startDashboard(t, time.Now, "--kubeconfig", kubeconfig(t), "-n", ns)
	base := strings.SplitN(link, "/?", 2)[0]
	u, err := url.Parse(base)
	g.Expect(err).NotTo(HaveOccurred())
	action := base + "/api/rollouts/" + ns + "/fw-2-0-7/pause"
	token := strings.SplitN(link, "token=", 2)[1]

	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	jar, _ := cookiejar.New(nil)
	withCookie := &http.Client{Jar: jar}
	resp, err := withCookie.Get(link) // the page sets the cookie
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(jar.Cookies(u)).To(HaveLen(1))

	do := func(c *http.Client, method, target string, hdr map[string]string) int {
		req, err := http.NewRequest(method, target, nil)
		g.Expect(err).NotTo(HaveOccurred())
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		return resp.StatusCode
	}
	g.Expect(do(plain, "GET", base+"/api/rollouts", nil)).To(Equal(http.StatusUnauthorized), "no cookie")
	g.Expect(do(plain, "GET", base+"/?token=0123", nil)).To(Equal(http.StatusUnauthorized), "wrong token")
	g.Expect(do(plain, "POST", action, map[string]string{"X-Stationfleet-Token": token})).To(Equal(http.StatusUnauthorized), "token header without the cookie")
	g.Expect(do(withCookie, "POST", action, nil)).To(Equal(http.StatusForbidden), "cookie without the token header (a cross-site form)")
	g.Expect(do(withCookie, "POST", action, map[string]string{"X-Stationfleet-Token": token, "Origin": "http://evil.example"})).To(Equal(http.StatusForbidden), "another origin")
	g.Expect(do(withCookie, "POST", action, map[string]string{"X-Stationfleet-Token": token, "Sec-Fetch-Site": "cross-site"})).To(Equal(http.StatusForbidden), "a cross-site fetch")
	g.Expect(do(withCookie, "GET", base+"/api/rollouts", map[string]string{"Host": "evil.example:" + u.Port()})).To(Equal(http.StatusForbidden), "DNS rebinding")
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	g.Expect(obj.Spec.Paused).To(BeFalse(), "a refused request paused the rollout")

	// The page's own request goes through.
	g.Expect(do(withCookie, "POST", action, map[string]string{"X-Stationfleet-Token": token, "Origin": base, "Sec-Fetch-Site": "same-origin"})).To(Equal(http.StatusOK))
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	g.Expect(obj.Spec.Paused).To(BeTrue())
}

// TestDashboardActionRefusedByRules: an action the commands' rules refuse
// (aborting a completed rollout, pausing one twice) is answered 409 with the
// command's words, and nothing is written.
func TestDashboardActionRefusedByRules(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	done := createRollout(t, newRollout(ns, "fw-2-0-6"), completedStatus())
	link, _ := startDashboard(t, time.Now, "--kubeconfig", kubeconfig(t), "-n", ns)
	base := strings.SplitN(link, "/?", 2)[0]
	token := strings.SplitN(link, "token=", 2)[1]
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(link)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	req, _ := http.NewRequest("POST", base+"/api/rollouts/"+ns+"/fw-2-0-6/abort", nil)
	req.Header.Set("X-Stationfleet-Token", token)
	resp, err = c.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusConflict))
	g.Expect(string(body)).To(ContainSubstring("rollout fw-2-0-6 is Completed: every step is done, so there is nothing to abort"))
	g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(done), done)).To(Succeed())
	g.Expect(done.Spec.Abort).To(BeFalse())
}

// TestDashboardRefusesNonLoopback: the dashboard does not listen on the
// network.
func TestDashboardRefusesNonLoopback(t *testing.T) {
	g := NewWithT(t)
	res := runCLI(t, "dashboard", "--address", "0.0.0.0:3100", "--kubeconfig", kubeconfig(t))
	g.Expect(res.code).To(Equal(1))
	g.Expect(res.errOut).To(ContainSubstring("listens on loopback only"))
}
