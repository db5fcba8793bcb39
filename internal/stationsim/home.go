package stationsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LoadHome reads a station's home directory as Basics Station does at start:
// station.conf's station_conf.routerid (ID6, 16 hex digits, or '-'/':'
// separated bytes), cups.uri, tc.uri, the cups.{trust,crt,key} and
// tc.{trust,crt,key} sets, the backup (cups-bak.*, with the marker
// cups-bak.done) and boot (cups-boot.*) sets, version.txt and sig-0.key,
// sig-1.key, ... up to the first missing one. Missing optional files are
// absent in the State.
func LoadHome(dir string) (State, error) {
	var st State
	conf, err := os.ReadFile(filepath.Join(dir, "station.conf"))
	if err != nil {
		return State{}, fmt.Errorf("station home %s: %w", dir, err)
	}
	var c struct {
		StationConf struct {
			RouterID json.RawMessage `json:"routerid"`
		} `json:"station_conf"`
	}
	if err := json.Unmarshal(conf, &c); err != nil {
		return State{}, fmt.Errorf("station home %s: station.conf: %w", dir, err)
	}
	if st.EUI, err = parseRouterID(c.StationConf.RouterID); err != nil {
		return State{}, fmt.Errorf("station home %s: station.conf routerid: %w", dir, err)
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	var errs []error
	get := func(name string) []byte {
		b, err := read(name)
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	st.CUPSURI = trimEnd(string(get("cups.uri")))
	st.TCURI = trimEnd(string(get("tc.uri")))
	st.CUPSCred = CredSet{Trust: get("cups.trust"), Cert: get("cups.crt"), Key: get("cups.key")}
	st.TCCred = CredSet{Trust: get("tc.trust"), Cert: get("tc.crt"), Key: get("tc.key")}
	for _, set := range []struct {
		prefix string
		dst    *CUPSSet
	}{{"cups-bak", &st.Backup}, {"cups-boot", &st.Boot}} {
		set.dst.URI = trimEnd(string(get(set.prefix + ".uri")))
		set.dst.Cred = CredSet{Trust: get(set.prefix + ".trust"), Cert: get(set.prefix + ".crt"), Key: get(set.prefix + ".key")}
	}
	_, err = os.Stat(filepath.Join(dir, "cups-bak.done"))
	st.BackupDone = err == nil
	st.Package = string(get("version.txt"))
	for i := 0; ; i++ {
		k := get("sig-" + strconv.Itoa(i) + ".key")
		if k == nil {
			break
		}
		st.SigKeys = append(st.SigKeys, k)
	}
	if err := errors.Join(errs...); err != nil {
		return State{}, fmt.Errorf("station home %s: %w", dir, err)
	}
	return st, nil
}

// parseRouterID reads routerid as a string in ID6, 16 plain hex digits or
// '-'/':' separated bytes, or as a JSON number.
func parseRouterID(raw json.RawMessage) (uint64, error) {
	if len(raw) == 0 {
		return 0, errors.New("missing")
	}
	var n uint64
	if json.Unmarshal(raw, &n) == nil {
		return n, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("neither a string nor a number: %s", raw)
	}
	s = strings.TrimSpace(s)
	if len(s) == 16 && !strings.ContainsAny(s, ":-") {
		return strconv.ParseUint(s, 16, 64)
	}
	if strings.Count(s, "-") == 7 || strings.Count(s, ":") == 7 {
		return strconv.ParseUint(strings.NewReplacer("-", "", ":", "").Replace(s), 16, 64)
	}
	return parseID6(s)
}

// parseID6 reads four 16-bit hex groups separated by ':', one "::" standing
// for zero groups.
func parseID6(s string) (uint64, error) {
	head, tail, compressed := strings.Cut(s, "::")
	split := func(p string) ([]string, error) {
		if p == "" {
			return nil, nil
		}
		g := strings.Split(p, ":")
		for _, x := range g {
			if x == "" || len(x) > 4 {
				return nil, fmt.Errorf("bad ID6 %q", s)
			}
		}
		return g, nil
	}
	h, err := split(head)
	if err != nil {
		return 0, err
	}
	t, err := split(tail)
	if err != nil {
		return 0, err
	}
	if compressed && strings.Contains(tail, "::") || !compressed && len(h) != 4 || len(h)+len(t) > 4 {
		return 0, fmt.Errorf("bad ID6 %q", s)
	}
	groups := append(append(h, make([]string, 4-len(h)-len(t))...), t...)
	var v uint64
	for _, g := range groups {
		n := uint64(0)
		if g != "" {
			x, err := strconv.ParseUint(g, 16, 16)
			if err != nil {
				return 0, fmt.Errorf("bad ID6 %q", s)
			}
			n = x
		}
		v = v<<16 | n
	}
	return v, nil
}
