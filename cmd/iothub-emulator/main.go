// Command iothub-emulator runs stationfleet's Azure IoT Hub emulator
// (internal/iothub/hubsim) on its own: the service REST API for device
// identities, twins and device queries, over HTTPS, with SAS-token
// authentication, for Microsoft's service SDKs, the project's own client
// and anyone else who needs an IoT hub on one machine.
//
// Microsoft's SDKs take the connection string's HostName as a host name and
// connect to it on port 443, as they do to "<hub>.azure-devices.net". So by
// default the hub is named "localhost" and the emulator listens on
// 127.0.0.1:443 (root or CAP_NET_BIND_SERVICE). With --addr elsewhere, only
// clients that can be told where to connect reach it (stationfleet's
// manager and CLI: --iothub-endpoint).
//
// Everything it keeps lives in --state-dir: the registry (registry.json),
// the policy key (registry.json.policy), the CA that signs its server
// certificate (hubsim-ca.pem, hubsim-ca.key), this run's server certificate
// (hubsim-server.pem) and the connection string (connection-string), so a
// restart keeps the devices, the key and the CA its clients trust. At start
// it prints the connection string and how to use it; SIGINT or SIGTERM
// saves the registry and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
)

// Files the emulator keeps in --state-dir besides hubsim's CA and
// certificate files.
const (
	registryFile         = "registry.json"
	connectionStringFile = "connection-string"
)

// options are the command's flags.
type options struct {
	addr       string
	hubName    string
	stateDir   string
	policyName string
	zap        zap.Options
}

func (o *options) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", "127.0.0.1:443",
		"Address to listen on. Microsoft's SDKs connect to the hub's name on port 443; on another port only clients told where to connect "+
			"(stationfleet's --iothub-endpoint) reach it.")
	fs.StringVar(&o.hubName, "hub-name", hubsim.DefaultHubName,
		"The hub's host name, without a port: the connection string's HostName, what SAS tokens sign, and a DNS name of the server certificate. "+
			"It must resolve to --addr's host for clients that connect to it (localhost does).")
	fs.StringVar(&o.stateDir, "state-dir", ".iothub-emulator",
		"Directory for the registry, the policy key, the CA and server certificate, and the connection string (created 0700).")
	fs.StringVar(&o.policyName, "policy-name", hubsim.DefaultPolicyName, "Name of the shared access policy in the connection string.")
	o.zap.BindFlags(fs)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "iothub-emulator: %v\n", err)
		}
		os.Exit(1)
	}
}

// run parses args, starts the emulator, prints how to reach it on stdout
// and serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("iothub-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	if err := hubsim.ValidateHubName(o.hubName); err != nil {
		return err
	}
	dir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	log := zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(stderr))

	hub, err := hubsim.New(hubsim.Options{
		Addr:       o.addr,
		HubName:    o.hubName,
		PolicyName: o.policyName,
		StateFile:  filepath.Join(dir, registryFile),
		CertDir:    dir,
		Logger:     log,
	})
	if err != nil {
		return withListenHint(err, o.addr)
	}
	csFile := filepath.Join(dir, connectionStringFile)
	if err := os.WriteFile(csFile, []byte(hub.ConnectionString()+"\n"), 0o600); err != nil {
		return errors.Join(fmt.Errorf("write the connection string: %w", err), hub.Close())
	}
	printUsage(stdout, hub, csFile)
	return serve(ctx, hub, log)
}

// serve runs the emulator until ctx is done; the registry is saved on the
// way out.
func serve(ctx context.Context, hub *hubsim.Server, log logr.Logger) error {
	err := hub.Serve(ctx)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("IoT Hub emulator stopped; registry saved")
	return nil
}

// printUsage tells the user how to connect. The connection string is
// printed on purpose, as every emulator's is: its key is a random local
// one, not a cloud credential; it never goes to the log.
func printUsage(w io.Writer, hub *hubsim.Server, csFile string) {
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format+"\n", a...) }
	p("IoT Hub emulator %q listening on %s", hub.HostName(), hub.Addr())
	p("Connection string: %s", hub.ConnectionString())
	p("  (also in %s)", csFile)
	p("CA certificate:    %s", hub.CAFile())
	p("Server certificate: %s", hub.ServerCertFile())
	p("")
	endpoint := ""
	if _, port, err := net.SplitHostPort(hub.Addr()); err != nil || port != "443" {
		endpoint = " --iothub-endpoint=" + hub.Addr()
		p("It does not listen on port 443: Microsoft's SDKs, which connect to %s:443, will not reach it.", hub.HostName())
	} else {
		p("Microsoft's Node.js SDK (azure-iothub): NODE_EXTRA_CA_CERTS=%s and IOTHUB_CONNECTION_STRING as above.", hub.CAFile())
	}
	p("stationfleet manager or CLI: --iothub-connection-string-file=%s --iothub-ca-file=%s%s", csFile, hub.CAFile(), endpoint)
}

// withListenHint explains the usual reason a port below 1024 cannot be
// bound.
func withListenHint(err error, addr string) error {
	if !errors.Is(err, os.ErrPermission) {
		return err
	}
	return fmt.Errorf("%w\nListening on %s needs root or CAP_NET_BIND_SERVICE (sudo setcap cap_net_bind_service=+ep <binary>). "+
		"Microsoft's SDKs always connect to port 443; for stationfleet's own client alone, --addr 127.0.0.1:8443 and --iothub-endpoint=127.0.0.1:8443 do", err, addr)
}
