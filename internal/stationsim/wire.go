package stationsim

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// FormatID6 renders an EUI the way the station writes the request's
// "router" field (encId6 in basicstation's src/uj.c): four 16-bit groups in
// lower-case hex without leading zeros, with "::" for the zero runs the
// station compresses, e.g. 0x001122FFFE334455 is "11:22ff:fe33:4455" and
// 0x0000000000000001 is "::1".
func FormatID6(eui uint64) string {
	g0, g1, g2, g3 := eui>>48&0xFFFF, eui>>32&0xFFFF, eui>>16&0xFFFF, eui&0xFFFF
	x := func(v uint64) string { return strconv.FormatUint(v, 16) }
	switch {
	case g0 == 0 && g1 == 0:
		if g2 == 0 {
			return "::" + x(g3)
		}
		return "::" + x(g2) + ":" + x(g3)
	case g2 == 0 && g3 == 0:
		if g1 == 0 {
			return x(g0) + "::"
		}
		return x(g0) + ":" + x(g1) + "::"
	case g1 == 0 && g2 == 0:
		return x(g0) + "::" + x(g3)
	}
	return x(g0) + ":" + x(g1) + ":" + x(g2) + ":" + x(g3)
}

// appendJSONString appends s as uj_encStr (basicstation src/uj.c) encodes a
// string: '"' and '\\' backslash-escaped, \b \f \n \r \t by name, other
// control bytes as \u00XX, every other byte (UTF-8 included) raw. Like the C
// code it stops at a NUL byte.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case 0:
			return append(b, '"')
		case '\\', '"':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				const hex = "0123456789ABCDEF"
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
				continue
			}
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func appendOptString(b []byte, s string, present bool) []byte {
	if !present {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// crcCred is sys_crcCred (basicstation src/sys.c): CRC32 over the .trust,
// .crt and .key files in that order, a missing or empty file counting as four
// zero bytes.
func crcCred(parts ...[]byte) uint32 {
	var crc uint32
	zero := []byte{0, 0, 0, 0}
	for _, p := range parts {
		if len(p) == 0 {
			p = zero
		}
		crc = crc32.Update(crc, crc32.IEEETable, p)
	}
	return crc
}

// trimEnd is the station's trimEnd: strips trailing space, tab, CR and LF.
func trimEnd(s string) string {
	return strings.TrimRight(s, " \t\r\n")
}

// The shell line the simulator recognises as "install": the station runs
// update.bin; the simulator only looks for this line.
const (
	versionLinePrefix = `echo "`
	versionLineSuffix = `" > "$STATION_HOME/version.txt"`
	// maxScanLine bounds the memory the version scanner uses per line.
	maxScanLine = 1024
)

// WriteUpdateScript writes the simulator's firmware for version: a shell
// script like the one a real station ran in the captured vectors
// (update.bin), padded with a trailing comment line to size bytes when size
// is larger than the script. It returns the number of bytes written. Memory
// use does not depend on size.
func WriteUpdateScript(w io.Writer, version string, size int64) (int64, error) {
	if version == "" || strings.ContainsAny(version, "\"\\$`\n\r\x00") {
		return 0, fmt.Errorf("update script: version %q must be non-empty and free of quotes, backslashes, $, backticks and line breaks", version)
	}
	script := "#!/bin/sh\n" +
		"# stationfleet test firmware: pretend to install " + version + "\n" +
		versionLinePrefix + version + versionLineSuffix + "\n" +
		"rm -f /tmp/update.bin\n"
	n, err := io.WriteString(w, script)
	written := int64(n)
	if err != nil {
		return written, fmt.Errorf("update script: %w", err)
	}
	pad := size - written
	if pad <= 0 {
		return written, nil
	}
	// A comment line: "#", filler, "\n" (a lone "\n" when only one byte is left).
	chunk := bytes.Repeat([]byte{'x'}, 32*1024)
	if pad > 1 {
		n, err = w.Write([]byte{'#'})
		written += int64(n)
		pad--
		if err != nil {
			return written, fmt.Errorf("update script: %w", err)
		}
	}
	for pad > 1 {
		c := chunk
		if int64(len(c)) > pad-1 {
			c = c[:pad-1]
		}
		n, err = w.Write(c)
		written += int64(n)
		pad -= int64(n)
		if err != nil {
			return written, fmt.Errorf("update script: %w", err)
		}
	}
	n, err = w.Write([]byte{'\n'})
	written += int64(n)
	if err != nil {
		return written, fmt.Errorf("update script: %w", err)
	}
	return written, nil
}

// UpdateScript returns WriteUpdateScript's output as bytes. With version
// "2.0.7" and size 0 it is byte-identical to the captured update.bin.
func UpdateScript(version string, size int64) ([]byte, error) {
	var b bytes.Buffer
	if _, err := WriteUpdateScript(&b, version, size); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// versionScanner is an io.Writer that finds the version line in an update
// script streaming past, holding at most one bounded line in memory.
type versionScanner struct {
	line     []byte
	overflow bool
	version  string
	found    bool
}

func (v *versionScanner) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if !v.overflow {
			if len(v.line)+len(part) > maxScanLine {
				v.overflow = true
				v.line = v.line[:0]
			} else {
				v.line = append(v.line, part...)
			}
		}
		if i < 0 {
			break
		}
		v.endLine()
		p = p[i+1:]
	}
	return n, nil
}

func (v *versionScanner) endLine() {
	if !v.overflow {
		if ver, ok := parseVersionLine(string(v.line)); ok {
			v.version, v.found = ver, true // the last write wins, as in the shell
		}
	}
	v.line = v.line[:0]
	v.overflow = false
}

func parseVersionLine(line string) (string, bool) {
	line = strings.TrimSpace(line)
	if len(line) < len(versionLinePrefix)+len(versionLineSuffix) ||
		!strings.HasPrefix(line, versionLinePrefix) || !strings.HasSuffix(line, versionLineSuffix) {
		return "", false
	}
	ver := line[len(versionLinePrefix) : len(line)-len(versionLineSuffix)]
	if strings.ContainsAny(ver, `"`) {
		return "", false
	}
	// The station re-reads version.txt ("ver\n") and trims trailing space.
	return trimEnd(ver), true
}

// validateAuthToken is the station's check of a cups.key / tc.key token
// (validateAuthToken in basicstation src/net.c): one or more header lines
// "Name: value\r\n", names of letters, digits, '-' and '_'.
func validateAuthToken(tok []byte) error {
	s := string(tok)
	if s == "" {
		return errors.New("empty auth token")
	}
	for s != "" {
		i := strings.Index(s, "\r\n")
		if i < 0 {
			return errors.New(`auth token must be header lines each ending in \r\n`)
		}
		line := s[:i]
		s = s[i+2:]
		colon := strings.Index(line, ": ")
		if colon <= 0 || colon+2 >= len(line) {
			return fmt.Errorf("auth token line %q is not \"Name: value\"", line)
		}
		for _, c := range line[:colon] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("auth token header name %q has a character the station refuses", line[:colon])
			}
		}
		if strings.ContainsAny(line[colon+2:], "\r\n") {
			return fmt.Errorf("auth token line %q has a stray line break", line)
		}
	}
	return nil
}
