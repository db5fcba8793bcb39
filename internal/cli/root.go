// Package cli implements the stationfleet command line: signing keys and
// signatures, publishing firmware, and following and steering
// FirmwareRollouts. The same binary works as the kubectl plugin
// kubectl-stationfleet ("kubectl stationfleet status my-rollout").
//
// Commands are built by NewRootCommand; cmd/stationfleet only runs it. Every
// dependency on the outside world (clock, terminal detection, streams) comes
// through Options, so tests produce deterministic output.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// PluginName is the executable name under which kubectl finds the CLI as a
// plugin ("kubectl stationfleet ...").
const PluginName = "kubectl-stationfleet"

// Options are the CLI's connections to the outside world.
type Options struct {
	// Streams are stdin, stdout and stderr.
	Streams genericiooptions.IOStreams
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// IsTerminal reports whether w is a terminal (colours, redrawing in
	// place); default: an *os.File on a TTY, and NO_COLOR unset.
	IsTerminal func(w io.Writer) bool
	// Name is the executable name (os.Args[0]); when it is PluginName the
	// help and hints say "kubectl stationfleet".
	Name string
}

func (o *Options) defaults() {
	if o.Streams.Out == nil {
		o.Streams = genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IsTerminal == nil {
		o.IsTerminal = isTerminal
	}
	if o.Name == "" {
		o.Name = "stationfleet"
	}
}

// isTerminal is true for a TTY when NO_COLOR (https://no-color.org) is unset.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// commandName is how the user invokes the CLI, for help texts and hints.
func (o *Options) commandName() string {
	base := strings.TrimSuffix(filepath.Base(o.Name), ".exe")
	if base == PluginName {
		return "kubectl stationfleet"
	}
	return base
}

// app is the state shared by the subcommands.
type app struct {
	Options
	kube *genericclioptions.ConfigFlags
	// client is cached after the first use.
	client client.Client
}

// NewRootCommand returns the stationfleet command with every subcommand.
func NewRootCommand(opts Options) *cobra.Command {
	opts.defaults()
	a := &app{Options: opts, kube: genericclioptions.NewConfigFlags(true)}
	name := a.commandName()
	root := &cobra.Command{
		Use:   "stationfleet",
		Short: "Sign firmware and roll it out to LoRa Basics Station gateways",
		Long: `stationfleet signs firmware for LoRa Basics Station gateways, publishes it to
Azure Blob Storage (or a local directory), writes FirmwareRollout manifests, and
follows and steers the rollouts the stationfleet operator runs.

Installed as ` + PluginName + ` on the PATH it is also a kubectl plugin:
"kubectl stationfleet status my-rollout". The kubeconfig, --context and
--namespace flags work as they do for kubectl.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: name},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(opts.Streams.In)
	root.SetOut(opts.Streams.Out)
	root.SetErr(opts.Streams.ErrOut)
	a.kube.AddFlags(root.PersistentFlags())

	root.AddGroup(&cobra.Group{ID: "keys", Title: "Keys and firmware:"}, &cobra.Group{ID: "rollouts", Title: "Rollouts:"},
		&cobra.Group{ID: "stations", Title: "Stations:"})
	for _, c := range []*cobra.Command{a.keygenCommand(), a.signCommand(), a.verifyCommand(), a.publishCommand()} {
		c.GroupID = "keys"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.statusCommand(), a.stationsCommand(), a.pauseCommand(), a.resumeCommand(), a.abortCommand(), a.retryCommand(), a.dashboardCommand()} {
		c.GroupID = "rollouts"
		root.AddCommand(c)
	}
	st := a.stationCommand()
	st.GroupID = "stations"
	root.AddCommand(st)
	return root
}

// Execute runs the CLI with args and returns the process exit code; errors
// are printed to the error stream as "error: ...".
func Execute(ctx context.Context, opts Options, args []string) int {
	opts.defaults()
	root := NewRootCommand(opts)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(opts.Streams.ErrOut, "error: %v\n", err)
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the process exit code for the error.
func (e *exitError) ExitCode() int { return e.code }

// kubeClient returns the API client and the namespace the flags select.
func (a *app) kubeClient() (client.Client, string, error) {
	ns, _, err := a.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("read kubeconfig: %w", err)
	}
	if a.client != nil {
		return a.client, ns, nil
	}
	cfg, err := a.kube.ToRESTConfig()
	if err != nil {
		return nil, "", fmt.Errorf("read kubeconfig: %w (set --kubeconfig or $KUBECONFIG, or --context)", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return nil, "", fmt.Errorf("connect to the cluster: %w", err)
	}
	a.client = c
	return c, ns, nil
}

// getRollout reads a rollout and turns the usual failures into errors that
// say what to do.
func (a *app) getRollout(ctx context.Context, c client.Client, ns, name string) (*fwv1.FirmwareRollout, error) {
	obj := &fwv1.FirmwareRollout{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		return nil, a.explainGetError(err, ns, name)
	}
	return obj, nil
}

func (a *app) explainGetError(err error, ns, name string) error {
	switch {
	case apierrors.IsNotFound(err):
		return &explained{fmt.Sprintf("FirmwareRollout %q not found in namespace %q: list them with `kubectl get firmwarerollouts -n %s`, or pass --namespace", name, ns, ns), err}
	case meta.IsNoMatchError(err):
		return &explained{"this cluster does not know FirmwareRollouts: install the stationfleet CRD first (kubectl apply -k config/default): " + err.Error(), err}
	case apierrors.IsForbidden(err):
		return fmt.Errorf("not allowed to read FirmwareRollout %s/%s: ask for get and patch on firmwarerollouts.firmware.stationfleet.io: %w", ns, name, err)
	}
	return fmt.Errorf("read FirmwareRollout %s/%s: %w", ns, name, err)
}

// explained is an error whose message replaces the wrapped one's, which
// stays reachable for errors.Is and apierrors.IsNotFound.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// newScheme knows the Kubernetes and stationfleet types.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = fwv1.AddToScheme(s)
	return s
}
