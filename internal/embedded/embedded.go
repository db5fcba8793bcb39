// Package embedded assembles stationfleet's embedded default: a fleet of
// stations registered in the IoT Hub emulator, a local firmware directory
// with firmware signed by the project's own signing code, and simulated
// stations that poll a CUPS server. The demo (cmd/stationfleet-demo), the
// controller's tests and the end-to-end tests build their worlds from it, so
// all three exercise the same setup.
package embedded

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// BaseEUI is the first simulated station's EUI; station i is BaseEUI+i.
// 0x0016C0 is an OUI block of the IEEE's; FFFE in the middle marks an EUI-64
// made from a MAC address, as real gateways' EUIs are.
const BaseEUI uint64 = 0x0016C0FFFE000000

// DeviceID returns the IoT Hub device id of an EUI: 16 upper-case hex digits.
func DeviceID(eui uint64) string { return fmt.Sprintf("%016X", eui) }

// Signer is a firmware signing key pair with the station's view of it.
type Signer struct {
	// Key is the private key.
	Key *ecdsa.PrivateKey
	// SigKey is the station's 64-byte sig-N.key.
	SigKey []byte
	// CRC is the CRC32 of SigKey: the rollout's keyChecksum.
	CRC uint32
}

// LoadOrCreateSigner reads the private key at path (PEM), or creates one
// there (mode 0600) when it does not exist.
func LoadOrCreateSigner(path string) (*Signer, error) {
	var key *ecdsa.PrivateKey
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if key, err = signing.ParsePrivateKeyPEM(b); err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		if key, err = signing.GenerateKey(); err != nil {
			return nil, err
		}
		pemBytes, err := signing.MarshalPrivateKeyPEM(key, signing.PKCS8)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			return nil, fmt.Errorf("write signing key: %w", err)
		}
	default:
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	return NewSigner(key)
}

// NewSigner returns the Signer of key.
func NewSigner(key *ecdsa.PrivateKey) (*Signer, error) {
	sk, err := signing.MarshalSigKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Signer{Key: key, SigKey: sk, CRC: signing.KeyCRC(sk)}, nil
}

// Firmware is a published, signed firmware: the four values a rollout names.
type Firmware struct {
	Package     string
	URL         string
	Signature   string
	KeyChecksum uint32
	// Path is the file in the firmware directory.
	Path string
}

// Publish writes an update for version into dir (as
// basicstation/<version>/update.bin: a script that sets version.txt, padded
// to size bytes when size is larger), signs it, and returns its file:// URL
// and signature.
func (s *Signer) Publish(dir, version string, size int64) (Firmware, error) {
	if strings.ContainsAny(version, "/\\") || version == "" || version == "." || version == ".." {
		return Firmware{}, fmt.Errorf("invalid firmware version %q", version)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Firmware{}, err
	}
	path := filepath.Join(abs, "basicstation", version, "update.bin")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Firmware{}, err
	}
	script, err := stationsim.UpdateScript(version, size)
	if err != nil {
		return Firmware{}, err
	}
	if err := os.WriteFile(path, script, 0o644); err != nil {
		return Firmware{}, fmt.Errorf("write firmware: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return Firmware{}, err
	}
	defer f.Close()
	der, err := signing.Sign(s.Key, f)
	if err != nil {
		return Firmware{}, fmt.Errorf("sign firmware: %w", err)
	}
	return Firmware{Package: version, URL: "file://" + filepath.ToSlash(path),
		Signature: signing.EncodeSignature(der), KeyChecksum: s.CRC, Path: path}, nil
}

// StationSpec describes one simulated station.
type StationSpec struct {
	// EUI is the station's EUI.
	EUI uint64
	// Tags are its twin tags (region, ring, ...).
	Tags map[string]string
	// Package is what its version.txt says at start, and what its twin
	// desires.
	Package string
	// Model is its platform ("linux" when empty).
	Model string
	// SigKeys are its sig-N.key files.
	SigKeys [][]byte
	// Behavior makes it misbehave.
	Behavior stationsim.Behavior
	// Current, when set, is the firmware its twin desires at start (so that
	// an abort has a complete previous firmware to restore); otherwise the
	// twin desires only Package.
	Current *Firmware
}

// FleetSpec returns n station specs: EUIs from BaseEUI+offset, tags
// region=eu-west|us-east alternating and ring=prod, the signer's key, and
// package pkg.
func FleetSpec(n, offset int, pkg string, s *Signer) []StationSpec {
	out := make([]StationSpec, n)
	for i := range out {
		region := "eu-west"
		if i%2 == 1 {
			region = "us-east"
		}
		out[i] = StationSpec{
			EUI:     BaseEUI + uint64(offset+i),
			Tags:    map[string]string{"region": region, "ring": "prod"},
			Package: pkg,
			SigKeys: [][]byte{s.SigKey},
		}
	}
	return out
}

// Register creates each station's device and twin in the emulator (tags,
// and desired cups.package = its package), skipping devices that exist.
func Register(hub *hubsim.Server, specs []StationSpec) error {
	for _, sp := range specs {
		id := DeviceID(sp.EUI)
		if _, exists := hub.TwinDocument(id); exists {
			continue
		}
		tags := map[string]any{}
		for k, v := range sp.Tags {
			tags[k] = v
		}
		cups := map[string]any{"package": sp.Package}
		if c := sp.Current; c != nil {
			cups = map[string]any{"package": c.Package, "fwUrl": c.URL, "fwSignature": c.Signature, "fwKeyChecksum": c.KeyChecksum}
		}
		desired := map[string]any{twin.DesiredCUPS: cups}
		if err := hub.Seed(id, tags, desired); err != nil {
			return fmt.Errorf("register station %s: %w", id, err)
		}
	}
	return nil
}

// Stations returns simulated stations for specs, polling cupsURI.
func Stations(specs []StationSpec, cupsURI string, opts ...stationsim.Option) []*stationsim.Station {
	out := make([]*stationsim.Station, len(specs))
	for i, sp := range specs {
		st := stationsim.State{EUI: sp.EUI, CUPSURI: cupsURI, Package: sp.Package, Model: sp.Model, SigKeys: sp.SigKeys}
		o := append([]stationsim.Option{stationsim.WithBehavior(sp.Behavior)}, opts...)
		out[i] = stationsim.New(st, o...)
	}
	return out
}
