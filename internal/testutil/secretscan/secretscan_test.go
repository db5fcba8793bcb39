package secretscan

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
)

// TestScanFindsEveryEncoding plants each secret, in one of the forms a
// careless log line or status field would carry it, inside other text, and
// checks that the scan names the secret, and that what is allowed to
// appear (a token's SHA-256, the key's public half) is not reported.
func TestScanFindsEveryEncoding(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	const sak = "c2VjcmV0LXNoYXJlZC1hY2Nlc3Mta2V5LW9mLXRoZS1odWI="
	conn := "HostName=h.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=" + sak
	const token = "sf1.9c2f0e6d4b7a8e1f3c5d2b6a9e8f7d1c"

	s := New()
	s.AddText("connection string", conn)
	s.AddBase64Text("SharedAccessKey", sak)
	s.AddText("station token", token)
	s.AddPEM("TLS key", pemKey)
	s.AddCredentialShapes()

	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	sum := sha256.Sum256([]byte(token))
	clean := fmt.Sprintf(`{"tokens":["%x"],"pub":"%s","msg":"SharedAccessKey=REDACTED"}`, sum, base64.StdEncoding.EncodeToString(pubDER))
	if f := s.Scan("clean", []byte(clean)); len(f) != 0 {
		t.Fatalf("a clean output reported: %v", f)
	}

	blob, _ := json.Marshal(map[string][]byte{"blob": append([]byte{1, 2, 3, 4, 5}, der...)}) // a []byte in JSON is base64, at offset 5
	pemInLog := strings.ReplaceAll(string(pemKey), "\n", "\\n")                               // a PEM file logged as a string
	for _, c := range []struct {
		name, out, want string
	}{
		{"connection string in a zap line", `INFO	setup	connecting	{"conn": "` + conn + `"}`, "connection string"},
		{"key value in an error", "error: 401 (key " + sak + ")", "SharedAccessKey"},
		{"decoded key as hex", "sign with " + hex.EncodeToString(mustB64(sak)), "SharedAccessKey"},
		{"token in a header dump", "Authorization: Bearer " + token + "\r\n", "station token"},
		{"token base64", "basic " + base64.StdEncoding.EncodeToString([]byte("u:"+token)), "station token"},
		{"PEM key in a log line", pemInLog, "TLS key"},
		{"DER key inside a base64 blob at an odd offset", string(blob), "TLS key"},
		{"a SAS token made with the key", `Authorization: SharedAccessSignature sr=h.azure-devices.net&sig=Zm9vYmFyYmF6cXV4cXV1eA%3D%3D&se=1767225600&skn=iothubowner`, "any IoT Hub SAS token"},
		{"a blob request signature", "Authorization: SharedKey devstoreaccount1:Zm9vYmFyYmF6cXV4cXV1eA==", "any storage SharedKey signature"},
		{"an unregistered bearer token", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "any bearer token"},
		{"an unregistered PEM key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE", "any PEM private key"},
		{"DER key as hex", "key=" + hex.EncodeToString(append([]byte{9}, der...)), "TLS key"},
		{"private scalar alone", "d=" + base64.StdEncoding.EncodeToString(key.D.FillBytes(make([]byte, 32))), "TLS key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			found := s.Scan("output", []byte(c.out))
			var names []string
			for _, f := range found {
				names = append(names, f.Secret)
				if strings.Contains(f.String(), sak) || strings.Contains(f.String(), token) {
					t.Errorf("the finding prints the secret: %s", f)
				}
			}
			if !contains(names, c.want) {
				t.Errorf("scan of %q found %v, want %q", c.name, found, c.want)
			}
		})
	}
}

func mustB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
