// Package browser drives headless Chromium for the dashboard's tests
// through github.com/chromedp/chromedp: start a tab, run steps with a
// timeout (a failure shows the page), wait for text, count elements and
// save screenshots.
//
// Chromium is Debian's chromium package (/usr/bin/chromium), or the binary
// $STATIONFLEET_CHROMIUM names. It runs headless, without the sandbox (CI
// runs as root), without the GPU, with a temporary profile.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

// EnvChromium names the Chromium binary to drive (default
// /usr/bin/chromium, else chromium on the PATH).
const EnvChromium = "STATIONFLEET_CHROMIUM"

// EnvScreenshots names the directory screenshots are saved in (default
// bin/screenshots in the module root).
const EnvScreenshots = "STATIONFLEET_SCREENSHOTS"

// StepTimeout bounds one call of Do or Get.
const StepTimeout = 30 * time.Second

// Start starts headless Chromium and returns the context of one tab; the
// browser stops when the test ends.
func Start(t testing.TB) context.Context {
	t.Helper()
	path := os.Getenv(EnvChromium)
	if path == "" {
		path = "/usr/bin/chromium"
		if _, err := os.Stat(path); err != nil {
			if p, err := exec.LookPath("chromium"); err == nil {
				path = p
			}
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no Chromium at %s: install Debian's chromium package (apt-get install chromium) or set $%s", path, EnvChromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000),
		chromedp.Flag("no-proxy-server", true),
		// Containers often have a small /dev/shm; Chromium then crashes tabs.
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	return ctx
}

// Get runs one action and returns its value, or fails t with the page's
// content.
func Get[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	return GetWithin(t, ctx, StepTimeout, what, a)
}

// GetWithin is Get with another timeout.
func GetWithin[T any](t testing.TB, ctx context.Context, timeout time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		defer hcancel()
		html, _ := chromedp.Run(hctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage: %.4000s", what, err, html)
	}
	return v
}

// Do runs steps in order, or fails t.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	Get(t, ctx, what, chromedp.Steps(steps...))
}

// Screenshot saves the whole page as NAME.png in the screenshots directory
// and returns its path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		root, err := kubetest.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "bin", "screenshots")
	}
	png := Get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}

// WaitText waits until the text of the first element sel matches contains
// want.
func WaitText(sel, want string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want)
	return Void(chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond)))
}

// WaitJS waits until the JavaScript expression is true.
func WaitJS(expr string) chromedp.Action[chromedp.Void] {
	return Void(chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
}

// Void drops an action's value, to run it among steps.
func Void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := a(ctx, t)
		return err
	})
}

// Count is how many elements sel matches.
func Count(sel string) chromedp.Action[int] {
	return chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

// CSS is the first element the CSS selector matches.
func CSS(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// ClickJS clicks the first element sel matches once it is there and
// enabled, from the page's own script: the element is looked up as it is
// clicked, so a live re-render between finding and clicking it cannot
// leave the click on a node that is gone, as chromedp.Click's node ids can
// ("Could not find node with given id").
func ClickJS(sel string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e || e.disabled) return false; e.click(); return true; })()`, sel)
	return Void(chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond)))
}
