package v1alpha1

import "slices"

// The vocabulary of a rollout's status and Events: every condition type,
// condition reason, Event reason, station failure reason and skip reason the
// controller writes is a constant here, so that clients (the CLI, Argo CD
// health checks, alerts) can match on them.

// Condition types.
const (
	// ConditionReady (kstatus) is True when the rollout completed, False
	// otherwise.
	ConditionReady = "Ready"
	// ConditionReconciling (kstatus) is present (True) while the rollout is
	// making progress towards its goal.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (kstatus) is present (True) when the rollout cannot go
	// on without a person: halted, bad firmware, no stations.
	ConditionStalled = "Stalled"
	// ConditionFirmwareVerified records that the preflight check passed for
	// the rollout's (immutable) firmware, so it is not downloaded again:
	// True with ReasonVerified, or False with ReasonFirmwareInvalid while
	// the check fails.
	ConditionFirmwareVerified = "FirmwareVerified"
)

// Condition and Event reasons (metav1.Condition.Reason is a string). When the
// controller has no specific reason for a phase, the Ready condition's reason
// is the phase's name (a RolloutPhase constant).
const (
	// ReasonProgressing: writing twins or waiting for stations.
	ReasonProgressing = "Progressing"
	// ReasonPaused: spec.paused is true or a timed pause step is waiting
	// (condition and Event).
	ReasonPaused = "Paused"
	// ReasonWaitingForResume: a `pause: {}` step waits for the resume
	// annotation.
	ReasonWaitingForResume = "WaitingForResume"
	// ReasonResumed: a `pause: {}` step was resumed, or a Halted rollout
	// goes on because its failures are within maxFailures again (Event).
	ReasonResumed = "Resumed"
	// ReasonHalted: more stations failed than strategy.maxFailures allows
	// (Stalled condition, Warning Event).
	ReasonHalted = "MaxFailuresExceeded"
	// ReasonFailureLimitAborted: failures passed maxFailures under
	// failurePolicy Abort, and the controller aborted the rollout by itself
	// (status.abortReason; Ready and Stalled conditions, Warning Event).
	ReasonFailureLimitAborted = "FailureLimitAborted"
	// ReasonRetried: the retry annotation sent the update again to the
	// stations the rollout counted Failed (Event).
	ReasonRetried = "Retried"
	// ReasonRetryRefused: the retry annotation was set on a rollout that
	// cannot be retried, Completed or Aborted (Warning Event).
	ReasonRetryRefused = "RetryRefused"
	// ReasonCompleted: every step is done and every station has an outcome
	// (Ready condition, Event).
	ReasonCompleted = "Completed"
	// ReasonAborting: restoring the previous firmware (condition, Event).
	ReasonAborting = "Aborting"
	// ReasonAborted: every station the rollout wrote is restored
	// (condition, Event).
	ReasonAborted = "Aborted"
	// ReasonDeleting: the rollout is deleted and releases the stations it
	// owns.
	ReasonDeleting = "Deleting"
	// ReasonFirmwareInvalid: the firmware check failed before any twin was
	// written (Stalled and FirmwareVerified conditions, Warning Event).
	ReasonFirmwareInvalid = "FirmwareInvalid"
	// ReasonVerified: the firmware check passed (FirmwareVerified True).
	ReasonVerified = "Verified"
	// ReasonInvalidStrategy: a step's batch size cannot be computed from the
	// strategy, or a batch window's schedule or time zone does not parse
	// (Stalled condition; for windows before any twin is written, with a
	// Warning Event).
	ReasonInvalidStrategy = "InvalidStrategy"
	// ReasonOutsideWindow: the next batch waits for one of
	// strategy.windows to open (Ready condition, phase Paused, Event when
	// the wait starts; status.nextWindow says when).
	ReasonOutsideWindow = "OutsideWindow"
	// ReasonNoStations: the selector matches no station (Stalled condition).
	ReasonNoStations = "NoStations"
	// ReasonBatchStarted: a batch's twins are being written (Event).
	ReasonBatchStarted = "BatchStarted"
	// ReasonBatchCompleted: every station of a batch has an outcome (Event).
	ReasonBatchCompleted = "BatchCompleted"
	// ReasonStationFailed: a station was counted Failed (Warning Event).
	ReasonStationFailed = "StationFailed"
	// ReasonRegistryError: a transient error (IoT Hub, API server); the
	// reconcile is retried (Ready and Reconciling conditions).
	ReasonRegistryError = "RegistryError"
	// ReasonAnalysisRunning: an analysis step is taking its measurements
	// (Ready condition; Event when it starts).
	ReasonAnalysisRunning = "AnalysisRunning"
	// ReasonAnalysisPassed: an analysis step passed and the rollout goes on
	// (Event).
	ReasonAnalysisPassed = "AnalysisPassed"
	// ReasonAnalysisFailed: an analysis step failed and the rollout is
	// halted (Stalled condition, Warning Event).
	ReasonAnalysisFailed = "AnalysisFailed"
	// ReasonAnalysisAborted: an analysis step with onFailure Abort failed
	// and the controller aborted the rollout by itself (status.abortReason;
	// Ready and Stalled conditions, Warning Event).
	ReasonAnalysisAborted = "AnalysisAborted"
	// ReasonMeasurementFailed: one measurement of an analysis failed its
	// success condition (Warning Event).
	ReasonMeasurementFailed = "MeasurementFailed"
	// ReasonMeasurementError: one measurement of an analysis could not be
	// taken or evaluated (Warning Event).
	ReasonMeasurementError = "MeasurementError"
	// ReasonReconciling is a generic Reconciling reason for clients; the
	// controller itself writes a more specific one.
	ReasonReconciling = "Reconciling"
)

// FailureReason says why a station failed: status.failures[].reason, the
// reason in the station's ownership record, and the CLI's stations view.
// The API server refuses any other value in status.failures.
//
// To add a reason (issue 15 adds Unhealthy and RolledBack): add its constant
// below, its name to the Enum marker and to FailureReasons, then run
// `make manifests`; TestFailureReasonEnum checks that the marker and
// FailureReasons agree.
// +kubebuilder:validation:Enum=KeyMismatch;ModelMismatch;NotApplied;TimedOut;Unhealthy;RolledBack
type FailureReason string

// The failure reasons of a station.
const (
	// FailureKeyMismatch: the station holds no sig-N.key with the rollout's
	// keyChecksum; CUPS did not send it the firmware.
	FailureKeyMismatch FailureReason = "KeyMismatch"
	// FailureModelMismatch: the station reports another model than
	// firmware.model; CUPS did not send it the firmware.
	FailureModelMismatch FailureReason = "ModelMismatch"
	// FailureNotApplied: the station still reports its old package after it
	// was sent the update maxUpdateAttempts times.
	FailureNotApplied FailureReason = "NotApplied"
	// FailureTimedOut: the station did not report the new package within
	// progressDeadline of its twin being written.
	FailureTimedOut FailureReason = "TimedOut"
	// FailureUnhealthy: within strategy.bakeTime of reporting the new
	// package, the station kept coming back to CUPS at a steady short
	// spacing: it cannot reach its network server (DESIGN.md section 3).
	FailureUnhealthy FailureReason = "Unhealthy"
	// FailureRolledBack: within strategy.bakeTime of reporting the new
	// package, the station reported its previous package again: its
	// firmware fell back to the old image.
	FailureRolledBack FailureReason = "RolledBack"
)

// FailureReasons returns every failure reason, in the order of the CRD's enum.
func FailureReasons() []FailureReason {
	return []FailureReason{FailureKeyMismatch, FailureModelMismatch, FailureNotApplied, FailureTimedOut,
		FailureUnhealthy, FailureRolledBack}
}

// Known reports whether r is one of FailureReasons, that is a value the API
// server accepts in status.failures. A reason read from a twin is outside
// input (another version's CUPS server, a hand edit) and must be checked
// before it goes into the status: one unknown reason would make the API
// server refuse the whole status write.
func (r FailureReason) Known() bool { return slices.Contains(FailureReasons(), r) }

// SkipReason says why a station is Skipped (the CLI's stations view; the
// status only counts skipped stations, in status.skipped).
type SkipReason string

// The skip reasons of a station.
const (
	// SkipOwnedElsewhere: another active rollout owns the station.
	SkipOwnedElsewhere SkipReason = "OwnedByAnotherRollout"
	// SkipNotOnUpgradePath: the station reports a package that
	// firmware.upgradeFrom does not list; it is not sent the update and
	// its twin is left (or put back) as it was.
	SkipNotOnUpgradePath SkipReason = "NotOnUpgradePath"
)
