package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/signing"
)

// openssl is the system openssl the signatures must satisfy.
const openssl = "/usr/bin/openssl"

var (
	sigLine = regexp.MustCompile(`(?m)^signature: (\S+)$`)
	crcLine = regexp.MustCompile(`(?m)^keyChecksum: (\d+)$`)
	keyCRC  = regexp.MustCompile(`(?m)^key CRC: (\d+)$`)
)

func TestKeygenSignVerifyRoundTrip(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "keys")
	fw := filepath.Join(t.TempDir(), "station-2.0.7.bin")
	g.Expect(os.WriteFile(fw, []byte("#!/bin/sh\necho new firmware\n"), 0o644)).To(Succeed())

	r := runCLI(t, "keygen", "--dir", dir, "--index", "1")
	g.Expect(r.code).To(Equal(0), r.errOut)
	m := keyCRC.FindStringSubmatch(r.out)
	g.Expect(m).To(HaveLen(2), r.out)

	// The station file is the 64-byte raw key whose CRC keygen printed.
	sigKey, err := os.ReadFile(filepath.Join(dir, "sig-1.key"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sigKey).To(HaveLen(signing.SigKeySize))
	g.Expect(m[1]).To(Equal(strconv.FormatUint(uint64(signing.KeyCRC(sigKey)), 10)))
	fi, err := os.Stat(filepath.Join(dir, "sig-1.private.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)), "the private key must be readable by its owner only")
	g.Expect(r.out).To(ContainSubstring("for a rollout's publicKeyRef: kubectl create configmap fw-signing --from-file=sig-1.key=" + filepath.Join(dir, "sig-1.key")))

	r = runCLI(t, "sign", fw, "--key", filepath.Join(dir, "sig-1.private.pem"))
	g.Expect(r.code).To(Equal(0), r.errOut)
	sig := sigLine.FindStringSubmatch(r.out)
	g.Expect(sig).To(HaveLen(2), r.out)
	g.Expect(crcLine.FindStringSubmatch(r.out)).To(Equal([]string{"keyChecksum: " + m[1], m[1]}))

	// verify accepts the station key, the PEM public key and the private key.
	for _, key := range []string{"sig-1.key", "sig-1.public.pem", "sig-1.private.pem"} {
		r = runCLI(t, "verify", fw, "--key", filepath.Join(dir, key), "--signature", sig[1])
		g.Expect(r.code).To(Equal(0), "verify with %s: %s", key, r.errOut)
		g.Expect(r.out).To(ContainSubstring("OK: the signature of"))
	}

	// openssl, as a station's crypto would, accepts the signature.
	der, err := signing.DecodeSignature(sig[1])
	g.Expect(err).NotTo(HaveOccurred())
	sigFile := filepath.Join(t.TempDir(), "fw.sig")
	g.Expect(os.WriteFile(sigFile, der, 0o644)).To(Succeed())
	out, err := exec.Command(openssl, "dgst", "-sha512", "-verify", filepath.Join(dir, "sig-1.public.pem"), "-signature", sigFile, fw).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(ContainSubstring("Verified OK"))

	// A changed file or another key fails, with a non-zero exit code.
	g.Expect(os.WriteFile(fw, []byte("tampered"), 0o644)).To(Succeed())
	r = runCLI(t, "verify", fw, "--key", filepath.Join(dir, "sig-1.key"), "--signature", sig[1])
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring("does not verify"))
}

func TestKeygenNeverOverwrites(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	r := runCLI(t, "keygen", "--dir", dir)
	g.Expect(r.code).To(Equal(0), r.errOut)
	before, err := os.ReadFile(filepath.Join(dir, "sig-0.private.pem"))
	g.Expect(err).NotTo(HaveOccurred())

	r = runCLI(t, "keygen", "--dir", dir)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring("already exists: keygen never overwrites keys; choose another --index or --dir"))
	after, err := os.ReadFile(filepath.Join(dir, "sig-0.private.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(after).To(Equal(before))

	// One existing file of the set is enough to refuse, and nothing is written.
	g.Expect(os.WriteFile(filepath.Join(dir, "sig-2.public.pem"), []byte("x"), 0o644)).To(Succeed())
	r = runCLI(t, "keygen", "--dir", dir, "--index", "2")
	g.Expect(r.code).To(Equal(1))
	g.Expect(filepath.Join(dir, "sig-2.key")).NotTo(BeAnExistingFile())
}

func TestSignVerifyErrorsSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	fw := filepath.Join(dir, "fw.bin")
	if err := os.WriteFile(fw, []byte("fw"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "keygen", "--dir", dir); r.code != 0 {
		t.Fatal(r.errOut)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"sign with the station key", []string{"sign", fw, "--key", filepath.Join(dir, "sig-0.key")}, "sign needs the private PEM key"},
		{"sign without key", []string{"sign", fw}, `required flag(s) "key" not set`},
		{"sign missing file", []string{"sign", filepath.Join(dir, "nope.bin"), "--key", filepath.Join(dir, "sig-0.private.pem")}, "open firmware"},
		{"verify bad base64", []string{"verify", fw, "--key", filepath.Join(dir, "sig-0.key"), "--signature", "not base64!"}, "--signature"},
		{"sign two files", []string{"sign", fw, fw, "--key", filepath.Join(dir, "sig-0.private.pem")}, "takes exactly 1 argument (FILE)"},
		{"keygen bad index", []string{"keygen", "--dir", dir, "--index", "12"}, "use 0 to 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r := runCLI(t, tt.args...)
			g.Expect(r.code).To(Equal(1))
			g.Expect(r.errOut).To(HavePrefix("error: "))
			g.Expect(r.errOut).To(ContainSubstring(tt.want))
		})
	}
}

// TestSignWritesTheStationKeyFile: signing with a private key (here an
// openssl-style key with no station file next to it) writes the station's
// sig-N.key beside it and prints its CRC, so nobody derives it with openssl
// (issue 13.5); a different existing file is never replaced.
func TestSignWritesTheStationKeyFile(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	priv, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	pemKey, err := signing.MarshalPrivateKeyPEM(priv, signing.SEC1)
	g.Expect(err).NotTo(HaveOccurred())
	keyFile := filepath.Join(dir, "sig-2.pem")
	g.Expect(os.WriteFile(keyFile, pemKey, 0o600)).To(Succeed())
	fw := filepath.Join(dir, "fw.bin")
	g.Expect(os.WriteFile(fw, []byte("firmware"), 0o644)).To(Succeed())

	r := runCLI(t, "sign", fw, "--key", keyFile)
	g.Expect(r.code).To(Equal(0), r.errOut)
	sigKey, err := os.ReadFile(filepath.Join(dir, "sig-2.key"))
	g.Expect(err).NotTo(HaveOccurred(), "sign writes the station key file next to the private key")
	want, _ := signing.MarshalSigKey(&priv.PublicKey)
	g.Expect(sigKey).To(Equal(want))
	g.Expect(r.errOut).To(ContainSubstring("key CRC " + strconv.FormatUint(uint64(signing.KeyCRC(want)), 10)))

	out := filepath.Join(dir, "other.key")
	g.Expect(os.WriteFile(out, []byte("not this key"), 0o644)).To(Succeed())
	r = runCLI(t, "sign", fw, "--key", keyFile, "--station-key-out", out)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring("is not the station key"))
}
