package azurite_test

import (
	"context"
	"net/http"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/testutil/azurite"
)

func TestStartServesAndStopKills(t *testing.T) {
	g := NewWithT(t)
	a, err := azurite.StartProcess()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.Endpoint).To(HavePrefix("http://127.0.0.1:"))
	g.Expect(a.ConnectionString()).To(ContainSubstring("AccountName=devstoreaccount1;"))

	g.Expect(a.CreateContainer(context.Background(), "probe")).To(Succeed())

	pid := a.PID()
	a.Stop()
	a.Stop() // idempotent
	g.Expect(syscall.Kill(pid, 0)).To(MatchError(syscall.ESRCH), "azurite still running after Stop")
	_, err = http.Get(a.Endpoint)
	g.Expect(err).To(HaveOccurred(), "port still answering after Stop")
	g.Expect(a.Dir).NotTo(BeADirectory(), "StartProcess's data directory is removed")
}

func TestStartProcessReportsMissingBinary(t *testing.T) {
	g := NewWithT(t)
	t.Setenv(azurite.EnvBinary, "/nonexistent/azurite-blob")
	_, err := azurite.StartProcess()
	g.Expect(err).To(MatchError(ContainSubstring("/nonexistent/azurite-blob")))
}
