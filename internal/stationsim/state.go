package stationsim

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/stationfleet/stationfleet/internal/signing"
)

// Defaults a real station of the captured vectors reports.
const (
	// DefaultStation is CFG_version " " CFG_bdate of the captured station.
	DefaultStation = "2.0.6(linux/std) 2026-11-27 18:19:31"
	// DefaultModel is CFG_platform of a linux build.
	DefaultModel = "linux"
)

// CredSet is one credential set as the station stores it: the files
// <cat>.trust, <cat>.crt and <cat>.key. Nil or empty means the file is
// absent. Key holds a DER private key, or an auth token ("Name: value\r\n"
// lines) when Cert is empty.
type CredSet struct {
	Trust, Cert, Key []byte
}

// CRC is the station's credential CRC (sys_crcCred): CRC32 over Trust, Cert
// and Key concatenated, a missing or empty file counting as four zero bytes.
// The empty set gives 2077607535.
func (c CredSet) CRC() uint32 { return crcCred(c.Trust, c.Cert, c.Key) }

func (c CredSet) clone() CredSet {
	return CredSet{Trust: bytes.Clone(c.Trust), Cert: bytes.Clone(c.Cert), Key: bytes.Clone(c.Key)}
}

// ParseCredBlob splits a CUPS credential segment the way the station does
// (sys_credComplete in basicstation src/sys.c): a DER trust certificate
// (ASN.1 SEQUENCE), then a DER client certificate or four zero bytes, then a
// DER key (SEQUENCE), nothing (a zero byte), or a token (the rest).
func ParseCredBlob(b []byte) (CredSet, error) {
	if len(b) == 0 || b[0] != 0x30 {
		return CredSet{}, errors.New("credential blob: ASN.1 SEQUENCE expected for the trust certificate")
	}
	seqLen := func(off int) (int, error) {
		// asn1_seqlen: short form, or a long form read as two length bytes.
		if off+1 >= len(b) {
			return 0, fmt.Errorf("credential blob: truncated ASN.1 header at offset %d", off)
		}
		if b[off+1]&0x80 != 0 {
			if off+3 >= len(b) {
				return 0, fmt.Errorf("credential blob: truncated ASN.1 length at offset %d", off)
			}
			return (int(b[off+2])<<8 | int(b[off+3])) + 4, nil
		}
		return int(b[off+1]) + 2, nil
	}
	tl, err := seqLen(0)
	if err != nil {
		return CredSet{}, err
	}
	co := tl
	var cl, ko int
	if co >= len(b) {
		return CredSet{}, fmt.Errorf("credential blob: %d bytes end inside the trust certificate (%d bytes)", len(b), tl)
	}
	if b[co] == 0 {
		cl, ko = 0, co+4
	} else {
		if b[co] != 0x30 {
			return CredSet{}, fmt.Errorf("credential blob: ASN.1 SEQUENCE or four zero bytes expected for the client certificate, got 0x%02x", b[co])
		}
		if cl, err = seqLen(co); err != nil {
			return CredSet{}, err
		}
		ko = co + cl
	}
	if ko > len(b) {
		return CredSet{}, fmt.Errorf("credential blob: expecting more data (key offset %d, blob %d bytes)", ko, len(b))
	}
	var kl int
	switch {
	case ko == len(b) || b[ko] == 0:
		kl = 0
	case b[ko] == 0x30:
		if kl, err = seqLen(ko); err != nil {
			return CredSet{}, err
		}
	default:
		kl = len(b) - ko // token
	}
	if tl+cl+kl > len(b) || ko+kl > len(b) {
		return CredSet{}, fmt.Errorf("credential blob: lengths do not align: blob %d bytes, trust %d + cert %d + key %d", len(b), tl, cl, kl)
	}
	return CredSet{
		Trust: bytes.Clone(b[:tl]),
		Cert:  bytes.Clone(b[co : co+cl]),
		Key:   bytes.Clone(b[ko : ko+kl]),
	}, nil
}

// State is what a station keeps in its home directory and build, the inputs
// of its CUPS request.
type State struct {
	// EUI is the station's EUI-64 (its routerid); the request carries it in
	// ID6 form.
	EUI uint64
	// CUPSURI is cups.uri, the regular set's URI, e.g.
	// "http://127.0.0.1:7171" or "https://host:443" (host and port, no
	// path, as the station requires). The request's cupsUri is always this
	// one, whichever set the session used.
	CUPSURI string
	// TCURI is tc.uri; "" means the file is absent (the request says null).
	TCURI string
	// CUPSCred and TCCred are the cups.{trust,crt,key} and tc.* files.
	// CUPSCred is the regular CUPS set: the one credentials sent over CUPS
	// replace, and the one the request's cupsCredCrc is computed over.
	CUPSCred, TCCred CredSet
	// Backup is the cups-bak.* set. The station fills it itself, once in
	// the life of its home directory: a copy of the regular set taken when
	// the first HTTP 200 answers a session made with the regular set
	// (backupConfigFiles in src/sys.c). Credentials rotated later through
	// CUPS never reach it.
	Backup CUPSSet
	// BackupDone is the marker file cups-bak.done: the copy was made and
	// will not be made again (it survives restarts).
	BackupDone bool
	// Boot is the cups-boot.* set, provisioned at the factory or by the
	// operator; the station never writes it.
	Boot CUPSSet
	// Package is version.txt (the request trims trailing white space).
	Package string
	// Model is CFG_platform; "" means DefaultModel.
	Model string
	// Station is the version and build string; "" means DefaultStation.
	Station string
	// SigKeys are sig-0.key, sig-1.key, ...; a nil entry is a missing file
	// and ends the list, as on the station.
	SigKeys [][]byte
}

// CUPSSet is a CUPS credential set besides the regular one: the files
// cups-bak.{uri,trust,crt,key} or cups-boot.{uri,trust,crt,key}.
type CUPSSet struct {
	// URI is the set's .uri file; "" means absent (a session with this set
	// then fails at once and the station moves on to the next set).
	URI string
	// Cred is the set's .trust, .crt and .key files.
	Cred CredSet
}

func (c CUPSSet) clone() CUPSSet { return CUPSSet{URI: c.URI, Cred: c.Cred.clone()} }

// CredSetName names the CUPS credential set a session used.
type CredSetName string

// The station's three CUPS credential sets, in the order it tries them
// (SYS_CRED_REG, SYS_CRED_BAK, SYS_CRED_BOOT in src/sys.h).
const (
	// CredSetRegular is cups.{uri,trust,crt,key} (State.CUPSURI, State.CUPSCred).
	CredSetRegular CredSetName = "regular"
	// CredSetBackup is cups-bak.* (State.Backup).
	CredSetBackup CredSetName = "backup"
	// CredSetBoot is cups-boot.* (State.Boot).
	CredSetBoot CredSetName = "boot"
)

// credSetNames is indexed by the station's cups_credset.
var credSetNames = [...]CredSetName{CredSetRegular, CredSetBackup, CredSetBoot}

// cupsSet returns the URI and credentials of set i (0 regular, 1 backup,
// 2 boot).
func (s State) cupsSet(i int) (string, CredSet) {
	switch i {
	case 1:
		return s.Backup.URI, s.Backup.Cred
	case 2:
		return s.Boot.URI, s.Boot.Cred
	}
	return s.CUPSURI, s.CUPSCred
}

// Clone returns a deep copy.
func (s State) Clone() State {
	c := s
	c.CUPSCred, c.TCCred = s.CUPSCred.clone(), s.TCCred.clone()
	c.Backup, c.Boot = s.Backup.clone(), s.Boot.clone()
	c.SigKeys = make([][]byte, len(s.SigKeys))
	for i, k := range s.SigKeys {
		c.SigKeys[i] = bytes.Clone(k)
	}
	return c
}

// KeyCRCs is the request's keys list: CRC32 of each sig-N.key until the first
// missing file (sys_crcSigkey stops at a zero CRC, which an empty file gives).
func (s State) KeyCRCs() []uint32 {
	crcs := []uint32{}
	for _, k := range s.SigKeys {
		if k == nil {
			break
		}
		crc := signing.KeyCRC(k)
		if crc == 0 {
			break
		}
		crcs = append(crcs, crc)
	}
	return crcs
}

// keyFiles returns the sig-N.key files the station would read, up to the
// first missing one.
func (s State) keyFiles() [][]byte {
	for i, k := range s.SigKeys {
		if k == nil {
			return s.SigKeys[:i]
		}
	}
	return s.SigKeys
}

// RequestBody returns the update-info JSON body the station sends for this
// state, byte for byte (field order, number and string formatting of
// basicstation's uj encoder).
func (s State) RequestBody() []byte {
	model, station := s.Model, s.Station
	if model == "" {
		model = DefaultModel
	}
	if station == "" {
		station = DefaultStation
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"router":`...)
	b = appendJSONString(b, FormatID6(s.EUI))
	b = append(b, `,"cupsUri":`...)
	b = appendOptString(b, trimEnd(s.CUPSURI), s.CUPSURI != "")
	b = append(b, `,"tcUri":`...)
	b = appendOptString(b, trimEnd(s.TCURI), s.TCURI != "")
	b = append(b, `,"cupsCredCrc":`...)
	b = strconv.AppendUint(b, uint64(s.CUPSCred.CRC()), 10)
	b = append(b, `,"tcCredCrc":`...)
	b = strconv.AppendUint(b, uint64(s.TCCred.CRC()), 10)
	b = append(b, `,"station":`...)
	b = appendJSONString(b, station)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, model)
	b = append(b, `,"package":`...)
	b = appendJSONString(b, trimEnd(s.Package))
	b = append(b, `,"keys":[`...)
	for i, crc := range s.KeyCRCs() {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(crc), 10)
	}
	return append(b, "]}"...)
}
