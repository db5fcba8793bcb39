package hubsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// errUnauthorized is wrapped by every SAS check failure; the reason is logged
// by the emulator but never returned in detail to the caller, as IoT Hub does.
var errUnauthorized = errors.New("unauthorized")

// checkSAS verifies an Authorization header the way IoT Hub does for a
// shared access policy token:
//
//	SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded signature>&se=<expiry>&skn=<policy>
//
// (fields in any order). sig must be base64(HMAC-SHA256(policy key, sr + "\n" +
// se)) over sr exactly as the token carries it: IoT Hub documents sr as the
// URL-encoded resource URI and signs that same text, so a client that
// encodes it (iotservice, the C# SDK) and one that sends a plain host name
// (Microsoft's Node SDK: a host name has nothing to encode) both verify. se
// (seconds since the epoch) must lie in the future; skn must name a known
// policy; the decoded sr must name this hub: its host name (no port, case
// insensitive), optionally followed by a path that prefixes the request
// path.
func checkSAS(header string, policies map[string][]byte, host, reqPath string, now time.Time) error {
	const prefix = "SharedAccessSignature "
	if !strings.HasPrefix(header, prefix) {
		return errors.Join(errUnauthorized, errors.New("not a SharedAccessSignature"))
	}
	raw := map[string]string{}
	fields := map[string]string{}
	for _, kv := range strings.Split(strings.TrimPrefix(header, prefix), "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return errors.Join(errUnauthorized, errors.New("malformed token field"))
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return errors.Join(errUnauthorized, errors.New("malformed token encoding"))
		}
		if _, dup := fields[k]; dup {
			return errors.Join(errUnauthorized, errors.New("duplicate token field "+k))
		}
		raw[k], fields[k] = v, dv
	}
	sr, sig, se, skn := fields["sr"], fields["sig"], fields["se"], fields["skn"]
	if sr == "" || sig == "" || se == "" {
		return errors.Join(errUnauthorized, errors.New("token lacks sr, sig or se"))
	}
	key, ok := policies[skn]
	if skn == "" || !ok {
		return errors.Join(errUnauthorized, errors.New("unknown shared access policy"))
	}
	exp, err := strconv.ParseInt(se, 10, 64)
	if err != nil {
		return errors.Join(errUnauthorized, errors.New("malformed expiry"))
	}
	if !now.Before(time.Unix(exp, 0)) {
		return errors.Join(errUnauthorized, errors.New("token expired"))
	}
	res := strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(sr, "https://"), "http://")), "/")
	target := strings.ToLower(host + reqPath)
	if res != strings.ToLower(host) && res != target && !strings.HasPrefix(target, res+"/") {
		return errors.Join(errUnauthorized, errors.New("token resource does not match the hub"))
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return errors.Join(errUnauthorized, errors.New("malformed signature"))
	}
	if !hmac.Equal(got, sign(key, raw["sr"], raw["se"])) {
		return errors.Join(errUnauthorized, errors.New("signature mismatch"))
	}
	return nil
}

// sign is the token signature over the URL-encoded resource encSR and the
// expiry se, both as the token carries them.
func sign(key []byte, encSR, se string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(encSR + "\n" + se))
	return h.Sum(nil)
}

// SASToken builds a service token for resource signed with the policy key
// (base64, as in a connection string), valid until expiry. Tests use it to
// craft expired or mis-signed tokens.
func SASToken(resource, policy, key string, expiry time.Time) (string, error) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return "", err
	}
	se := strconv.FormatInt(expiry.Unix(), 10)
	sr := url.QueryEscape(resource)
	sig := base64.StdEncoding.EncodeToString(sign(k, sr, se))
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sig) +
		"&se=" + se + "&skn=" + url.QueryEscape(policy), nil
}
