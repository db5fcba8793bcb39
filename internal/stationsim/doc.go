// Package stationsim simulates LoRa Basics Station 2.0.6 speaking CUPS, byte
// for byte as the real station does (lorabasics/basicstation src/cups.c,
// src/sys.c, src/net.c, src/uj.c), for tests, the demo and benchmarks.
//
// It deliberately does not import internal/cups: it has its own request
// writer and response reader, as a real station has, so that a bug in the
// server's codec cannot hide behind the same bug here.
//
// What it models:
//
//   - State as the station keeps it (State): EUI, cups.uri, tc.uri, the cups
//     and tc credential sets with the station's CRCs, version.txt, model,
//     station string, sig-N.key files.
//   - The request: a new connection per session, "POST /update-info" with
//     Host, Content-Type, a space-padded Content-Length and the raw header
//     lines of a cups.key token (sent only over TLS with a trust and no
//     client certificate, as on the station), then the JSON body with the
//     station's field order and formatting (State.RequestBody).
//   - The response, with the station's limits: HTTP 200 and a
//     Content-Length required; a header that fits the 8 KiB buffer; both URI
//     segments plus one byte in the first read; signature segment 8..132
//     bytes; streamed update data (hashed with SHA-512, never held in
//     memory). Every violation is a *ProtocolError or a Result.Violations
//     entry, so a soak test can assert that no response was malformed.
//   - The outcome: URIs and credentials committed, the update verified
//     against every 64-byte key (the CRC in the segment is only logged),
//     refused when the station has keys and no signature came, run unsigned
//     when it has neither; "installing" sets the package to the version the
//     update script writes (see UpdateScript).
//   - Misbehaviour (Behavior): never apply, apply another version, stop
//     polling; a wrong or missing key is just a State with other SigKeys.
//   - The three CUPS credential sets (src/cups.c cups_ondone, src/sys.c
//     backupConfigFiles): regular (State.CUPSURI + State.CUPSCred), backup
//     (State.Backup) and boot (State.Boot), each a URI plus trust, cert and
//     key. Each Poll is one session with the set the station is on
//     (Result.CredSet, Station.NextCredSet). A failed session moves it to
//     the next set (regular -> backup -> boot -> regular) at once when the
//     server answered an HTTP status other than 200 or the set has no URI,
//     otherwise only when more than FailCountThreshold (6) failures came
//     before it since the last success (the count is not reset by a move,
//     so from the 8th failure on every failure moves). A success returns to
//     the regular set and clears the count. The request body always
//     carries the regular set's cupsUri and cupsCredCrc. The first HTTP 200
//     to a session made with the regular set copies the regular set to the
//     backup set and sets State.BackupDone (the marker cups-bak.done); it
//     is never copied again (Result.BackupTaken). Credentials and URIs sent
//     over CUPS replace the regular set only, whichever set the session
//     used. The failure count and current set are process memory
//     (Station.Restart clears them); State is the home directory.
//   - The server certificate check of mbedTLS 2.28 (see tls.go): chain to
//     the set's trust, then the host of the URI matched against the dNSName
//     entries of subjectAltName only (an IP literal matches a dNSName with
//     the same text, never an iPAddress entry); the subject CN only when
//     the certificate has no subjectAltName extension. A refusal is a
//     *CertVerifyError whose text is mbedTLS's.
//
// Not modelled: the TC (LNS) connection and its own backup set, and the 24 h
// / 1 min poll schedule (Run and Fleet poll at a fixed, jittered interval,
// or the retry interval after a failure: WithRetryInterval,
// FleetOptions.RetryInterval).
//
// Usage:
//
//	st := stationsim.New(stationsim.State{
//		EUI:     0x001122FFFE334455,
//		CUPSURI: "http://127.0.0.1:7171",
//		Package: "v1",
//		SigKeys: [][]byte{sigKey}, // 64 bytes, see internal/signing
//	})
//	res := st.Poll(ctx)
//	if res.Err != nil || res.Malformed() { ... }
//	if res.Update == stationsim.UpdateApplied { fmt.Println(res.PackageAfter) }
//
//	// Credential sets: the regular set is CUPSURI + CUPSCred; the backup
//	// is filled by the station itself on its first HTTP 200 (or loaded
//	// from a home directory with BackupDone set); Boot is provisioned.
//	st := stationsim.State{EUI: eui, CUPSURI: uri, CUPSCred: cred1,
//		Boot: stationsim.CUPSSet{URI: bootURI, Cred: bootCred}}
//	s := stationsim.New(st, stationsim.WithRetryInterval(10*time.Millisecond))
//	res := s.Poll(ctx)   // res.CredSet == stationsim.CredSetRegular, res.BackupTaken
//	s.State().Backup     // CUPSSet{URI: uri, Cred: cred1}, never refreshed
//	res = s.Poll(ctx)    // after a 403: res.NextCredSet == stationsim.CredSetBackup
//	s.Restart()          // process restart: back to the regular set, count cleared
//
//	fw, _ := stationsim.UpdateScript("2.0.7", 64<<20) // firmware that installs 2.0.7
//
//	fleet := stationsim.NewFleet(stations, stationsim.FleetOptions{Interval: 2 * time.Second})
//	go fleet.Run(ctx)
//	... fleet.Stats().Malformed == 0
package stationsim
