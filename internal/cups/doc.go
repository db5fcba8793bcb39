// Package cups is stationfleet's CUPS server: it answers the POST
// /update-info polls of LoRa Basics Station gateways (release 2.0.6 wire
// format, DESIGN.md sections 3, 4 and 6).
//
// The parts, from the wire inwards:
//
//   - ParseRequest and ParseEUI read a station's request: every EUI form a
//     station writes, tcUri null, 32-bit CRCs, the keys list; wrong types
//     are a *RequestError (HTTP 400) that says which field and why.
//   - Response encodes the six length-prefixed segments (1-byte URI
//     lengths, 2-byte credential lengths, 4-byte signature and update
//     lengths, little-endian), streaming credential and firmware blobs from
//     readers of known size.
//   - Decide is the pure decision for one request: which URIs,
//     credentials and firmware to send, which refusal (KeyMismatch,
//     ModelMismatch) to record, whether the observation must be written and
//     the controller woken. Observe computes the observation record.
//   - TwinCache fronts the twin registry with a short TTL and single-flight,
//     so a poll storm costs one registry read per station per period; the
//     controller invalidates entries it changes.
//   - Server authenticates stations (client certificate verified against a
//     CA, EUI from its common name, SHA-1 thumbprint listed in the twin; or a
//     bearer token whose SHA-256 is listed in the twin's tags), refuses a
//     body whose router is not the authenticated station, streams the
//     answer with a Content-Length, records observations off the request
//     path (coalesced per station, written only when something changed) and
//     exports Prometheus metrics prefixed stationfleet_cups_. It is a
//     controller-runtime Runnable that runs on every replica.
//
// Typical wiring:
//
//	srv, err := cups.NewServer(opts, registry, blobs, cups.WithNotifier(waker))
//	mgr.Add(srv)                       // or srv.Start(ctx) on its own
//	reconciler.Cache = srv.Cache()     // controllers.TwinCache
package cups
