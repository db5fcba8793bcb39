// Package stores lists stationfleet's firmware storage backends and builds
// the firmware.Router a program (the manager, the CLI) serves blobs from.
// Registry is the one source of the URL schemes stationfleet serves: the
// router's choice, its errors and the help texts come from it, and
// TestAPISchemesAreRegistered holds the API's firmware.url rule to it.
//
// A new backend is a package under internal/firmware exporting a
// *firmware.Backend and a store; list the Backend in Registry, configure its
// store in Options and New, and add its scheme to the firmware.url rule in
// api/v1alpha1 (the test fails until both agree).
package stores

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/stationfleet/stationfleet/internal/firmware"
	"github.com/stationfleet/stationfleet/internal/firmware/azblob"
	"github.com/stationfleet/stationfleet/internal/firmware/local"
)

// registry holds every backend, in the order messages list their schemes.
var registry = func() *firmware.Registry {
	r, err := firmware.NewRegistry(azblob.Backend, local.Backend)
	if err != nil {
		panic(err) // a programming error: two backends claim a scheme
	}
	return r
}()

// Registry returns the registry of every firmware storage backend.
func Registry() *firmware.Registry { return registry }

// ParseURL parses and validates a blob URL of any backend without knowing
// the configuration; see firmware.Registry.ParseURL.
func ParseURL(raw string) (firmware.BlobURL, error) { return registry.ParseURL(raw) }

// Options configure the stores and the checker of a program (manager, CLI).
type Options struct {
	// Azure configures Azure Blob storage; it is used when Configured.
	Azure azblob.Options
	// Dir is the local firmware directory for file:// URLs; empty disables
	// them.
	Dir string
	// MaxSize is the largest firmware the Checker accepts, in bytes.
	MaxSize int64
}

// DefaultOptions returns Options with defaults filled in.
func DefaultOptions() Options {
	return Options{Azure: azblob.DefaultOptions(), MaxSize: firmware.DefaultMaxSize}
}

// BindFlags registers all options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	o.Azure.BindFlags(fs)
	fs.StringVar(&o.Dir, "firmware-dir", o.Dir, "Local directory served for file:// firmware and credential URLs; empty disables file:// URLs.")
	fs.Var(firmware.SizeFlag(&o.MaxSize), "firmware-max-size", "Largest firmware a rollout may use, in bytes or with a Ki/Mi/Gi suffix.")
}

// New builds the Router for the options: Azure when configured, the local
// directory when set. URLs of a backend that is not configured are refused
// with an error saying what to set.
func New(o Options) (*firmware.Router, error) {
	var mounts []firmware.Mount
	if o.Azure.Configured() {
		s, err := azblob.New(o.Azure)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, firmware.Mount{Backend: azblob.Backend, Store: s})
	}
	if o.Dir != "" {
		s, err := local.New(o.Dir)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, firmware.Mount{Backend: local.Backend, Store: s})
	}
	if len(mounts) == 0 {
		return nil, errors.New("no firmware storage configured: " + enableHints())
	}
	return firmware.NewRouter(registry, mounts...)
}

// enableHints says how to configure each backend: "for Azure Blob storage
// set ...; for the local firmware directory set ...".
func enableHints() string {
	var hints []string
	for _, b := range registry.Backends() {
		hints = append(hints, fmt.Sprintf("for %s %s", b.Name, b.Enable))
	}
	return strings.Join(hints, "; ")
}
