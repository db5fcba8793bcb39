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
//   - The poll schedule (Schedule, schedule.go; src/cups.c cups_ondone,
//     sys_triggerCUPS, sys_delayCUPS, src/tc.c tc_continue; DESIGN.md
//     section 3): a start poll within Schedule.Start (0.2 s) of every start,
//     the restart after an applied update included (update.bin restarts
//     the station on the new firmware; Result.StartPoll); then the CUPS
//     timer: OKSync (CUPS_OKSYNC_INTV, 24 h) after a success, Resync
//     (CUPS_RESYNC_INTV, R, 60 s) after a failure or a change of the CUPS
//     URI or credentials. DefaultSchedule is the real one; tests and the
//     demo scale it (Schedule.Scale) and set OKSync to a short check-in
//     (FleetOptions.Interval is OKSync).
//   - The TC (network-server) connection as far as it moves the schedule
//     (Behavior.TC, TCState): the TC engine starts after each CUPS session.
//     Up: it connects, and every later poll, even after a failed one, waits
//     OKSync. Rejected: it invokes CUPS at once, which polls R later: a
//     poll every R. Unreachable: 11 attempts with backoff 0, 0, 10, 20, 30,
//     40, 50, 60, 60, 60, 60 s (390 s, Schedule.TCGiveUp), then CUPS R
//     later: a poll every 450 s (Schedule.UnreachableSpacing), all scaled
//     with the schedule. Behavior.TCAfterUpdate breaks (or mends) it with
//     the next applied update; a change of Behavior.TC through SetBehavior
//     takes effect at once (a connected engine starts over, a running one
//     connects; the real station's MUXS reconnect backoff of up to 31 s
//     before it asks /router-info again is left out).
//   - A firmware that falls back to its old image (Behavior.FallBackAfter):
//     after the start poll that reported the new package, the station
//     restarts on its previous package (and TC state) and does its start
//     poll reporting that (Stats.FallBacks).
//
// Not modelled: the TC protocol itself (router-info, the MUXS websocket)
// and its own credential sets; a blackholed network server (each connect
// blocking ~134 s) and one that accepts and never answers (invisible to
// CUPS: the same as TC up). Run and Fleet jitter the OKSync wait (±10%
// by default) so a fleet does not check in in lockstep; a Fleet spreads
// its stations' first polls over one OKSync. R, the TC backoff and start
// polls are exact, as on the station.
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
//
//	// Health after an update: the real schedule at 1/300 (R = 200 ms,
//	// unreachable every 1.5 s), checking in every 2 s; one station's
//	// update breaks its network-server connection, another's falls back.
//	stations[0].SetBehavior(stationsim.Behavior{TCAfterUpdate: stationsim.TCRejected})
//	stations[1].SetBehavior(stationsim.Behavior{FallBackAfter: time.Second})
//	fleet = stationsim.NewFleet(stations, stationsim.FleetOptions{Interval: 2 * time.Second,
//		Schedule: stationsim.DefaultSchedule().Scale(1.0 / 300)})
package stationsim
