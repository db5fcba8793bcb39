package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Environment variables of the IoT Hub connection.
const (
	// EnvIoTHubConnectionString holds the IoT Hub service connection string.
	EnvIoTHubConnectionString = "IOTHUB_CONNECTION_STRING"
	// EnvIoTHubConnectionStringFile names a file holding it.
	EnvIoTHubConnectionStringFile = "IOTHUB_CONNECTION_STRING_FILE"
	// EnvIoTHubCAFile names a PEM file of CAs to trust for IoT Hub (the
	// emulator's).
	EnvIoTHubCAFile = "IOTHUB_CA_FILE"
	// EnvIoTHubEndpoint is a host:port to connect to instead of the
	// connection string's HostName (an emulator only).
	EnvIoTHubEndpoint = "IOTHUB_ENDPOINT"
)

// IoT Hub client tuning for an interactive command.
const (
	cliRetryAttempts  = 3
	cliRequestTimeout = 15 * time.Second
)

// hubOptions say how to reach IoT Hub. The connection string is a secret:
// it comes from a file or the environment, never from a flag's value, and is
// never printed.
type hubOptions struct {
	connectionStringFile string
	caFile               string
	endpoint             string
}

func (o *hubOptions) bindFlags(cmd *cobra.Command) { o.bindFlagSet(cmd.Flags()) }

func (o *hubOptions) bindFlagSet(fs *pflag.FlagSet) {
	fs.StringVar(&o.connectionStringFile, "iothub-connection-string-file", os.Getenv(EnvIoTHubConnectionStringFile),
		"File holding the IoT Hub service connection string (default $"+EnvIoTHubConnectionStringFile+"; else $"+EnvIoTHubConnectionString+" holds the string itself).")
	fs.StringVar(&o.caFile, "iothub-ca-file", os.Getenv(EnvIoTHubCAFile),
		"PEM CA certificate to trust for IoT Hub, e.g. the stationfleet emulator's (default $"+EnvIoTHubCAFile+").")
	fs.StringVar(&o.endpoint, "iothub-endpoint", os.Getenv(EnvIoTHubEndpoint),
		"For an emulator only: host:port to connect to instead of the connection string's HostName on port 443 (default $"+EnvIoTHubEndpoint+").")
}

// connect opens the twin registry; extra options follow the defaults.
func (o *hubOptions) connect(extra ...iothub.Option) (*iothub.Client, error) {
	cs := ""
	switch {
	case o.connectionStringFile != "":
		b, err := os.ReadFile(o.connectionStringFile)
		if err != nil {
			return nil, fmt.Errorf("read IoT Hub connection string: %w", err)
		}
		cs = strings.TrimSpace(string(b))
	default:
		cs = strings.TrimSpace(os.Getenv(EnvIoTHubConnectionString))
	}
	if cs == "" {
		return nil, errors.New("no IoT Hub connection string: set --iothub-connection-string-file or $" + EnvIoTHubConnectionString +
			" (a service policy that may read the registry, e.g. from `az iot hub connection-string show --policy-name registryRead`)")
	}
	// A person is waiting: retry throttling briefly, and fail within
	// seconds when the hub is unreachable.
	opts := []iothub.Option{iothub.WithRetry(cliRetryAttempts, 200*time.Millisecond, 2*time.Second), iothub.WithTimeout(cliRequestTimeout)}
	if o.caFile != "" {
		opts = append(opts, iothub.WithCAFile(o.caFile))
	}
	if o.endpoint != "" {
		opts = append(opts, iothub.WithEndpoint(o.endpoint))
	}
	c, err := iothub.New(cs, append(opts, extra...)...)
	if err != nil {
		// iothub.New never quotes the connection string.
		return nil, fmt.Errorf("connect to IoT Hub: %w", err)
	}
	return c, nil
}

// stationRow is one line of the stations table.
type stationRow struct {
	id      string
	batch   int
	outcome rules.StationOutcome
	// pkg is the package the station last reported ("" when never seen).
	pkg string
	// served is how many times CUPS sent this rollout's package.
	served int
	// lastSeen is when the station last polled CUPS (zero: never).
	lastSeen time.Time
	// tags are the user's twin tags with a scalar value (region, ring).
	tags map[string]string
}

func (a *app) stationsCommand() *cobra.Command {
	var hub hubOptions
	var outcome, output string
	cmd := &cobra.Command{
		Use:   "stations ROLLOUT [--outcome Updated|Failed|InProgress|Pending|Skipped]",
		Short: "List the per-station outcomes of a rollout, read from the twins",
		Long: `stations reads the device twins of the stations a rollout selects or owns from
IoT Hub and shows, per station, its batch, outcome (Updated, Failed,
InProgress, Pending, Skipped), the failure or skip reason, the package it last
reported to CUPS and how many times CUPS sent it the update. The outcome rule
is the controller's.

The IoT Hub service connection string comes from --iothub-connection-string-file
or $` + EnvIoTHubConnectionString + `; it is never printed.`,
		Example: `  IOTHUB_CONNECTION_STRING_FILE=hub.txt ` + a.commandName() + ` stations fw-2-0-7 --outcome Failed`,
		Args:    exactArgs(1, "ROLLOUT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, err := parseOutcome(outcome)
			if err != nil {
				return err
			}
			if output != "" && output != "wide" {
				return fmt.Errorf("--output %q: the only output format is wide", output)
			}
			return a.runStations(cmd.Context(), args[0], hub, want, output == "wide")
		},
	}
	hub.bindFlags(cmd)
	cmd.Flags().StringVar(&outcome, "outcome", "", "Only stations with this outcome: Updated, Failed, InProgress, Pending or Skipped.")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: wide adds when each station last polled and a message.")
	return cmd
}

func parseOutcome(s string) (fwv1.StationOutcome, error) {
	if s == "" {
		return "", nil
	}
	for _, o := range []fwv1.StationOutcome{fwv1.OutcomeUpdated, fwv1.OutcomeFailed, fwv1.OutcomeInProgress, fwv1.OutcomePending, fwv1.OutcomeSkipped} {
		if strings.EqualFold(s, string(o)) {
			return o, nil
		}
	}
	return "", fmt.Errorf("--outcome %q: use Updated, Failed, InProgress, Pending or Skipped", s)
}

func (a *app) runStations(ctx context.Context, name string, hub hubOptions, want fwv1.StationOutcome, wide bool) error {
	c, ns, err := a.kubeClient()
	if err != nil {
		return err
	}
	obj, err := a.getRollout(ctx, c, ns, name)
	if err != nil {
		return err
	}
	active, err := a.activeRollouts(ctx, c, ns)
	if err != nil {
		return err
	}
	reg, err := hub.connect()
	if err != nil {
		return err
	}
	defer reg.Close()
	rows, err := collectStations(ctx, reg, obj, newOutcomeParams(obj, active, a.Now()))
	if err != nil {
		return err
	}
	if obj.Status.Phase == fwv1.PhaseAborted {
		fmt.Fprintf(a.Streams.ErrOut, "note: %s was aborted: its stations were restored and released; each shows what the rollout counted at the abort\n", name)
	}
	writeStations(a.Streams.Out, rows, want, wide, printer{now: a.Now()})
	return nil
}

// activeRollouts returns the UIDs of rollouts that still hold their stations,
// as the controller counts them. Without permission to list rollouts in
// every namespace it falls back to the rollout's own namespace.
func (a *app) activeRollouts(ctx context.Context, c client.Client, ns string) (map[string]bool, error) {
	var list fwv1.FirmwareRolloutList
	err := c.List(ctx, &list)
	if apierrors.IsForbidden(err) {
		fmt.Fprintf(a.Streams.ErrOut, "warning: cannot list FirmwareRollouts in every namespace; stations owned by rollouts outside %s show as Pending\n", ns)
		err = c.List(ctx, &list, client.InNamespace(ns))
	}
	if err != nil {
		return nil, fmt.Errorf("list FirmwareRollouts: %w", err)
	}
	return rules.ActiveRollouts(list.Items), nil
}

// twinQuerier is the part of the registry stations needs.
type twinQuerier interface {
	Query(ctx context.Context, sel twin.Selector, fn func(page []*twin.Twin) error) error
}

// collectStations reads the stations the rollout owns and those its
// selector matches, and classifies each once.
func collectStations(ctx context.Context, reg twinQuerier, obj *fwv1.FirmwareRollout, p outcomeParams) ([]stationRow, error) {
	seen := map[string]bool{}
	var rows []stationRow
	add := func(page []*twin.Twin) error {
		for _, t := range page {
			if seen[t.DeviceID] {
				continue
			}
			seen[t.DeviceID] = true
			r := stationRow{id: t.DeviceID, outcome: evaluateTwin(t, p), tags: userTags(t)}
			r.batch, r.served = r.outcome.Batch, r.outcome.UpdatesServed
			if ob := t.Observation; ob != nil {
				r.pkg, r.lastSeen = ob.Package, ob.LastSeen
			}
			rows = append(rows, r)
		}
		return nil
	}
	if err := reg.Query(ctx, twin.Selector{OwnerUID: p.uid}, add); err != nil {
		return nil, fmt.Errorf("query the stations %s owns: %w", obj.Name, err)
	}
	sel := twin.Selector{DeviceIDs: obj.Spec.Selector.DeviceIDs, Tags: obj.Spec.Selector.Tags}
	if err := reg.Query(ctx, sel, add); err != nil {
		return nil, fmt.Errorf("query the stations %s selects: %w", obj.Name, err)
	}
	sort.Slice(rows, func(i, j int) bool {
		bi, bj := rows[i].batch, rows[j].batch
		if (bi == 0) != (bj == 0) {
			return bj == 0 // written stations first
		}
		if bi != bj {
			return bi < bj
		}
		return rows[i].id < rows[j].id
	})
	return rows, nil
}

// writeStations prints the table of rows with outcome want ("" for all) and
// a count per outcome.
func writeStations(w io.Writer, rows []stationRow, want fwv1.StationOutcome, wide bool, p printer) {
	counts := map[fwv1.StationOutcome]int{}
	var shown []stationRow
	for _, r := range rows {
		counts[r.outcome.State]++
		if want == "" || r.outcome.State == want {
			shown = append(shown, r)
		}
	}
	if len(shown) == 0 {
		if want != "" {
			fmt.Fprintf(w, "No station of %d is %s.\n", len(rows), want)
		} else {
			fmt.Fprintln(w, "The rollout selects no station and owns none.")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "DEVICE ID\tBATCH\tOUTCOME\tREASON\tPACKAGE\tUPDATES SERVED"
	if wide {
		head += "\tLAST SEEN\tMESSAGE"
	}
	fmt.Fprintln(tw, head)
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range shown {
		batch := "-"
		if r.batch > 0 {
			batch = fmt.Sprint(r.batch)
		}
		reason := r.outcome.Reason
		if r.outcome.Baking {
			reason = "baking until " + r.outcome.Deadline.UTC().Format(time.RFC3339)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d", r.id, batch, r.outcome.State, dash(reason), dash(r.pkg), r.served)
		if wide {
			seen, msg := "never", r.outcome.Message
			if !r.lastSeen.IsZero() {
				seen = p.ago(r.lastSeen)
			}
			switch {
			case r.outcome.FromHistory:
			case r.outcome.Baking:
				msg = fmt.Sprintf("%s: Updated %s if it does not come back to CUPS or fall back", r.outcome.Message, p.ago(r.outcome.Deadline))
			case r.outcome.State == fwv1.OutcomeInProgress:
				msg = fmt.Sprintf("waiting for the station to report the package; times out %s", p.ago(r.outcome.Deadline))
			case r.outcome.State == fwv1.OutcomePending:
				msg = "not written yet"
			}
			line += "\t" + seen + "\t" + dash(msg)
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
	var parts []string
	for _, o := range []fwv1.StationOutcome{fwv1.OutcomeUpdated, fwv1.OutcomeFailed, fwv1.OutcomeInProgress, fwv1.OutcomePending, fwv1.OutcomeSkipped} {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
		}
	}
	fmt.Fprintf(w, "%d of %d stations shown (%s)\n", len(shown), len(rows), strings.Join(parts, ", "))
}

// userTags returns the twin's tags that a person set and that have a
// scalar value (region, ring, ...), as text; stationfleet's own are left out.
func userTags(t *twin.Twin) map[string]string {
	out := map[string]string{}
	for k, v := range t.Tags {
		if k == twin.TagRoot {
			continue
		}
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64, bool, json.Number:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}
