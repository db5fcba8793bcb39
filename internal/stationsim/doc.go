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
//
// Not modelled: the backup and bootstrap credential sets the station rotates
// to after repeated failures, the TC (LNS) connection, and the 24 h / 1 min
// poll schedule (Run and Fleet poll at a fixed, jittered interval).
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
//	fw, _ := stationsim.UpdateScript("2.0.7", 64<<20) // firmware that installs 2.0.7
//
//	fleet := stationsim.NewFleet(stations, stationsim.FleetOptions{Interval: 2 * time.Second})
//	go fleet.Run(ctx)
//	... fleet.Stats().Malformed == 0
package stationsim
