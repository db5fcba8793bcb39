package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/dashboard"
	"github.com/stationfleet/stationfleet/internal/iothub"
)

// defaultDashboardAddress is where the dashboard listens by default (the
// port Argo Rollouts' dashboard uses too, so people know it).
const defaultDashboardAddress = "127.0.0.1:3100"

func (a *app) dashboardCommand() *cobra.Command {
	var hub hubOptions
	var address string
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a live web page of the rollouts on loopback",
		Long: `dashboard serves a web page on loopback that shows every FirmwareRollout of
the namespace (or of all namespaces with -A) as it changes: phase, progress,
a bar per batch, failures and conditions. A rollout's page adds its stations'
outcomes read from the twins (filter them by outcome and by tag, e.g. region
or ring) and a chart of its progress over time. Pause, resume and abort ask
for a confirmation and show the API server's answer.

The page acts with your kubeconfig's credentials, so your RBAC applies. It
listens on loopback only, and the URL it prints carries a token for this run:
open that URL (other local users and other web sites cannot use the page).
The page needs no internet access.

The stations' outcomes need the IoT Hub service connection string
(--iothub-connection-string-file or $` + EnvIoTHubConnectionString + `);
without it the page shows the rollouts only.`,
		Example: `  ` + a.commandName() + ` dashboard -n lorawan
  ` + a.commandName() + ` dashboard -A --address 127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runDashboard(cmd.Context(), address, allNamespaces, hub)
		},
	}
	hub.bindFlags(cmd)
	cmd.Flags().StringVar(&address, "address", defaultDashboardAddress, "Loopback address to serve the page on (port 0 picks a free one).")
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "Show the rollouts of every namespace.")
	return cmd
}

func (a *app) runDashboard(ctx context.Context, address string, all bool, hub hubOptions) error {
	c, ns, err := a.kubeClient()
	if err != nil {
		return err
	}
	cfg, err := a.kube.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("read kubeconfig: %w", err)
	}
	raw, err := a.kube.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return fmt.Errorf("read kubeconfig: %w", err)
	}
	kctx := raw.CurrentContext
	if a.kube.Context != nil && *a.kube.Context != "" {
		kctx = *a.kube.Context
	}
	shown := ns
	if all {
		shown = ""
	}
	opts := dashboard.Options{Config: cfg, Namespace: shown, Controller: &dashboardControl{a: a, c: c}, Now: a.Now, Context: kctx}
	reg, err := hub.connect()
	if err != nil {
		opts.StationsUnavailable = "the dashboard has no IoT Hub connection: " + err.Error()
		fmt.Fprintf(a.Streams.ErrOut, "warning: station outcomes are not shown: %v\n", err)
	} else {
		defer reg.Close()
		// activeRollouts warns on every read when it may not list every
		// namespace: the page reads often, so say it once.
		quiet := *a
		quiet.Streams.ErrOut = &onceWriter{w: a.Streams.ErrOut, seen: map[string]bool{}}
		opts.Stations = &dashboardStations{a: &quiet, c: c, reg: reg}
	}
	// The server logs each action and watch failure to the terminal: who
	// clicked what is worth keeping next to the URL.
	ctx = ctrl.LoggerInto(ctx, funcr.New(func(prefix, args string) {
		fmt.Fprintf(a.Streams.ErrOut, "%s %s\n", a.Now().UTC().Format(time.RFC3339), args)
	}, funcr.Options{}))
	srv, err := dashboard.New(opts)
	if err != nil {
		return err
	}
	ln, err := dashboard.Listen(address)
	if err != nil {
		return err
	}
	where := "namespace " + ns
	if all {
		where = "all namespaces"
	}
	fmt.Fprintf(a.Streams.Out, "Dashboard of the FirmwareRollouts in %s: %s\n", where, srv.URL(ln))
	fmt.Fprintln(a.Streams.Out, "(the URL carries this run's token; press Ctrl-C to stop)")
	return srv.Serve(ctx, ln)
}

// dashboardControl carries out the page's actions with the commands' own
// rules and patch (planControl, applyControl).
type dashboardControl struct {
	a *app
	c client.Client
}

func (d *dashboardControl) Check(act dashboard.Action, obj *fwv1.FirmwareRollout) error {
	_, err := planControl(control(act), obj, d.a.commandName(), d.a.Now())
	return err
}

func (d *dashboardControl) Control(ctx context.Context, act dashboard.Action, ns, name string) (string, error) {
	plan, obj, err := d.a.applyControl(ctx, d.c, control(act), ns, name)
	var refused *planRefusal
	if errors.As(err, &refused) {
		return "", &dashboard.RefusedError{Err: refused.err}
	}
	if err != nil {
		return "", err
	}
	msg := plan.done
	if _, argo := obj.Annotations[argoTrackingAnnotation]; argo && plan.gitField != "" {
		msg += fmt.Sprintf(". Argo CD manages %s/%s: set %s in Git too, or a sync reverts it", ns, name, plan.gitField)
	}
	return msg, nil
}

// dashboardStations reads a rollout's stations as the stations command does.
type dashboardStations struct {
	a   *app
	c   client.Client
	reg *iothub.Client
	// mu keeps activeRollouts' warnings from interleaving.
	mu sync.Mutex
}

func (d *dashboardStations) Stations(ctx context.Context, obj *fwv1.FirmwareRollout) ([]dashboard.Station, error) {
	d.mu.Lock()
	active, err := d.a.activeRollouts(ctx, d.c, obj.Namespace)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p := newOutcomeParams(obj, active, d.a.Now())
	rows, err := collectStations(ctx, d.reg, obj, p)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Station, 0, len(rows))
	for _, r := range rows {
		st := dashboard.Station{ID: r.id, Batch: r.batch, Outcome: r.outcome.State, Reason: r.outcome.Reason,
			Message: r.outcome.Message, Package: r.pkg, UpdatesServed: r.served, Tags: r.tags}
		switch {
		case r.outcome.FromHistory:
		case r.outcome.Baking:
			st.Reason = "Baking"
			st.Message = fmt.Sprintf("%s: Updated at %s if it does not come back to CUPS or fall back", r.outcome.Message, r.outcome.Deadline.UTC().Format(time.RFC3339))
		case r.outcome.State == fwv1.OutcomeInProgress:
			st.Message = "waiting for the station to report the package; times out at " + r.outcome.Deadline.UTC().Format(time.RFC3339)
		case r.outcome.State == fwv1.OutcomePending:
			st.Message = "not written yet"
		}
		if !r.lastSeen.IsZero() {
			t := r.lastSeen.UTC()
			st.LastSeen = &t
		}
		out = append(out, st)
	}
	return out, nil
}

// onceWriter writes each distinct message once.
type onceWriter struct {
	mu   sync.Mutex
	w    io.Writer
	seen map[string]bool
}

func (o *onceWriter) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[string(p)] {
		return len(p), nil
	}
	o.seen[string(p)] = true
	return o.w.Write(p)
}
