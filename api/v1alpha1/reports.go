package v1alpha1

// ReportedStationsAnnotation names stations of the rollout that reported news
// (a new package, an update served, a refusal) to a CUPS server running in a
// process whose controller does not run this rollout: a manager watching
// other namespaces, or a replica that is not the leader. Its value is JSON,
// {"stations":["001122FFFE334455",...]}, with "more":true when more stations
// reported than the list holds. The manager that runs the rollout re-reads
// just those twins and removes the annotation; both writers guard their
// patches with the object's resourceVersion, so that neither loses the
// other's write. Set by stationfleet, not by people.
const ReportedStationsAnnotation = "firmware.stationfleet.io/reported-stations"
