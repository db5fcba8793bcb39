package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	rolloutadmission "github.com/stationfleet/stationfleet/internal/admission"
)

// serveAdmission serves the FirmwareRollout webhook on the address and
// with the certificate envtest made for it, and waits until it answers.
func (e *Env) serveAdmission() error {
	o := e.Environment.WebhookInstallOptions
	srv := webhook.NewServer(webhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir})
	srv.Register(rolloutadmission.Path, admission.WithValidator[*fwv1.FirmwareRollout](e.Scheme, rolloutadmission.RolloutValidator{}))
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWebhook = cancel
	go func() { _ = srv.Start(ctx) }()
	addr := net.JoinHostPort(o.LocalServingHost, strconv.Itoa(o.LocalServingPort))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only probes that the port answers TLS
		if err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	return fmt.Errorf("the admission webhook did not start on %s", addr)
}
