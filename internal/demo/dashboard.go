package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/stationfleet/stationfleet/internal/cli"
)

// dashboardURL finds the URL `stationfleet dashboard` prints.
var dashboardURL = regexp.MustCompile(`http://\S+/\?token=[0-9a-f]+`)

// startDashboard runs `stationfleet dashboard` on addr for the demo's
// namespace, with the demo's kubeconfig and IoT Hub emulator, and returns
// the URL it printed and a function that stops it.
func startDashboard(ctx context.Context, addr, kubeconfig, ns string, hubArgs []string) (string, func(), error) {
	pr, pw := io.Pipe()
	dctx, cancel := context.WithCancel(ctx)
	args := append([]string{"dashboard", "--address", addr, "--kubeconfig", kubeconfig, "-n", ns}, hubArgs...)
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(dctx, cli.Options{Streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: pw}}, args)
		_ = pw.Close()
	}()
	found := make(chan string, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u := dashboardURL.FindString(sc.Text()); u != "" {
				select {
				case found <- u:
				default:
				}
				continue
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	stop := func() { cancel(); <-done }
	select {
	case u := <-found:
		return u, stop, nil
	case code := <-done:
		cancel()
		var out []string
		for len(lines) > 0 {
			out = append(out, <-lines)
		}
		return "", nil, fmt.Errorf("the dashboard exited %d: %s", code, strings.Join(out, "; "))
	case <-time.After(time.Minute):
		stop()
		return "", nil, fmt.Errorf("the dashboard printed no URL within a minute")
	}
}
