package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// FirmwareRolloutKind is the kind of the FirmwareRollout resource.
const FirmwareRolloutKind = "FirmwareRollout"

// Annotations and finalizers of the API.
const (
	// ResumeAnnotation resumes a rollout waiting in an indefinite pause step
	// (`pause: {}`). Its value is any token that
	// differs from status.lastHandledResume, typically a timestamp; the CLI
	// sets it with `kubectl stationfleet resume`. Git stays the source of
	// truth for everything else.
	ResumeAnnotation = "firmware.stationfleet.io/resume-requested-at"

	// RetryAnnotation sends the update again to every station the rollout
	// counted Failed, with their attempts counted afresh, and lets a
	// halted rollout go on. Its value is any token that differs from
	// status.lastHandledRetry, typically a timestamp; the CLI sets it with
	// `kubectl stationfleet retry`. A Completed or Aborted rollout ignores it.
	RetryAnnotation = "firmware.stationfleet.io/retry-requested-at"

	// Finalizer keeps a rollout until no twin is owned by it any more.
	Finalizer = "firmware.stationfleet.io/finalizer"
)

// FirmwareRolloutSpec is the desired state of a FirmwareRollout.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.abort) || !oldSelf.abort || (has(self.abort) && self.abort)",message="spec.abort cannot be set back to false: an aborted rollout stays aborted; create a new FirmwareRollout instead"
// +kubebuilder:validation:XValidation:rule="self.firmware == oldSelf.firmware",message="spec.firmware is immutable: create a new FirmwareRollout for another firmware"
type FirmwareRolloutSpec struct {
	// firmware is the firmware package to roll out.
	// +required
	Firmware FirmwareSpec `json:"firmware"`

	// selector chooses the stations that should get the firmware, by device
	// id, by twin tags, or both (a station must then match both).
	// +required
	Selector StationSelector `json:"selector"`

	// strategy says in which batches the stations are updated and when the
	// rollout stops by itself.
	// +required
	Strategy RolloutStrategy `json:"strategy"`

	// paused stops the rollout at the next safe point: no further twin is
	// written until it is false again. Stations already written keep going.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// abort stops the rollout and restores, on every station it wrote, the
	// four firmware fields the station had before. It cannot be undone.
	// +optional
	Abort bool `json:"abort,omitempty"`
}

// FirmwareSpec names a signed firmware package.
// +kubebuilder:validation:XValidation:rule="!has(self.upgradeFrom) || !(self.package in self.upgradeFrom)",message="firmware.upgradeFrom must not contain firmware.package: a station that already runs it needs no update",fieldPath=".upgradeFrom"
// +kubebuilder:validation:XValidation:rule="!has(self.publicKeyRef) || (size(self.publicKeyRef.name) > 0 && size(self.publicKeyRef.key) > 0)",message="firmware.publicKeyRef needs both name and key: the ConfigMap in the rollout's namespace and the key that holds the public key"
type FirmwareSpec struct {
	// package is the version the station's version.txt says after the
	// update; stations reporting another package get the update.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.trim() == self",message="firmware.package must not start or end with white space: the station trims version.txt, so it would never match"
	// +kubebuilder:validation:XValidation:rule="!self.matches(r'[\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}]')",message="firmware.package must not contain a newline, a tab or any other control or invisible character: it is compared with the station's version.txt and written to twins and logs"
	Package string `json:"package"`

	// url is where the firmware blob lives: azblob://<container>/<path>,
	// https://<account>.blob.core.windows.net/<container>/<path>, or
	// file:///<path> (the embedded default's local directory).
	// +required
	// +kubebuilder:validation:MinLength=8
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('azblob://') || self.startsWith('https://') || self.startsWith('file://')",message="firmware.url must start with azblob://, https:// or file://"
	// +kubebuilder:validation:XValidation:rule="!self.matches(r'[\\s\\p{Cc}\\p{Cf}\\p{Z}\\\\]')",message="firmware.url must not contain white space, control characters or backslashes (write a space in a blob name as %20)"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="firmware.url must not have a query (?...) or a fragment (#...): a SAS token or other credential belongs in the manager's storage settings, never in a rollout"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-z]+://[^/]*@')",message="firmware.url must not carry user info (user:password@): credentials belong in the manager's storage settings, never in a rollout"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('azblob://') || (self.matches('^azblob://[^/]+/[^/]') && !self.endsWith('/'))",message="firmware.url azblob:// needs a container and a blob path: azblob://<container>/<path/to/blob>"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^azblob://[^/]') || self.matches('^azblob://[$](root|web)(/|$)') || (self.matches('^azblob://[a-z0-9-]{3,63}(/|$)') && self.matches('^azblob://[a-z0-9]+(-[a-z0-9]+)*(/|$)'))",message="firmware.url: an azblob:// container name is 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('https://') || (self.matches('^https://[^/]+/[^/]+/[^/]') && !self.endsWith('/'))",message="firmware.url https:// needs a host, a container and a blob path: https://<account>.blob.core.windows.net/<container>/<path/to/blob>"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('file://') || (self.matches('^file://(localhost)?/[^/]') && !self.endsWith('/'))",message="firmware.url file:// needs the absolute path of a file: file:///<path/to/file>"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-z]+://[^/]*/(.*/)?[.]{1,2}(/|$)') && !self.matches('^[a-z]+://.*//')",message="firmware.url must not have empty (//), '.' or '..' path segments"
	URL string `json:"url"`

	// signature is the base64 DER ECDSA P-256 signature over the SHA-512 of
	// the firmware blob (`kubectl stationfleet sign` prints it).
	// A P-256 DER signature is 8 to 72 bytes, so 12 to 96 base64 characters.
	// +required
	// +kubebuilder:validation:MinLength=12
	// +kubebuilder:validation:MaxLength=96
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9+/]+={0,2}$') && size(self) % 4 == 0",message="firmware.signature must be standard base64 (A-Z, a-z, 0-9, +, /, padded with =) of a DER signature"
	Signature string `json:"signature"`

	// keyChecksum is the CRC32 of the station's sig-N.key file whose private
	// half made the signature; stations without that key are reported
	// KeyMismatch and are not sent the firmware.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	KeyChecksum int64 `json:"keyChecksum"`

	// publicKeyRef points at the station key file sig-N.key (64 bytes) or
	// the PEM public key in a ConfigMap of the rollout's namespace; when set,
	// the controller verifies the signature over the blob before it writes
	// any twin. A public key is not a secret: keeping it in a ConfigMap
	// means the manager needs no access to Secrets at all.
	// +optional
	PublicKeyRef *ConfigMapKeySelector `json:"publicKeyRef,omitempty"`

	// model, when set, limits the update to stations reporting this model
	// (for example "linux"); others are reported ModelMismatch.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="!self.matches(r'[\\s\\p{Cc}\\p{Cf}\\p{Z}]')",message="firmware.model must not contain white space or control characters: it is compared with the model the station reports, for example linux"
	Model string `json:"model,omitempty"`

	// upgradeFrom, when set, names the packages this firmware may be
	// installed over (AWS IoT Jobs' current-version rule): the CUPS server
	// sends the update only to a station that reports one of them. Any
	// other station is Skipped with reason NotOnUpgradePath, never Failed,
	// and its twin is left as it was. Each entry is a package as a station's
	// version.txt says it, validated like firmware.package. Empty: every
	// selected station gets the update.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="self.trim() == self",message="firmware.upgradeFrom entries must not start or end with white space: the station trims version.txt, so they would never match"
	// +kubebuilder:validation:items:XValidation:rule="!self.matches(r'[\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}]')",message="firmware.upgradeFrom entries must not contain a newline, a tab or any other control or invisible character: they are compared with the station's version.txt"
	UpgradeFrom []string `json:"upgradeFrom,omitempty"`
}

// ConfigMapKeySelector selects a key of a ConfigMap in the rollout's
// namespace. The key may be in the ConfigMap's data (a PEM public key) or
// binaryData (a raw 64-byte sig-N.key, as `kubectl create configmap
// --from-file` stores it).
type ConfigMapKeySelector struct {
	// name is the ConfigMap's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="size(self) == 0 || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="firmware.publicKeyRef.name must be a ConfigMap's name: lower-case letters, digits, '-' and '.'"
	Name string `json:"name"`

	// key is the key within the ConfigMap's data or binaryData.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="size(self) == 0 || self.matches('^[-._a-zA-Z0-9]+$')",message="firmware.publicKeyRef.key must be a key of the ConfigMap's data: letters, digits, '-', '_' and '.'"
	Key string `json:"key"`
}

// StationSelector chooses stations. It is structured so that the controller
// builds a safely quoted IoT Hub query; it never takes a query string.
// +kubebuilder:validation:XValidation:rule="(has(self.deviceIds) && size(self.deviceIds) > 0) || (has(self.tags) && size(self.tags) > 0)",message="selector needs deviceIds or tags (or both): a rollout must not select every station by accident"
type StationSelector struct {
	// deviceIds lists stations by IoT Hub device id: the station EUI as 16
	// upper-case hex digits (0011:22ff:fe33:4455 is 001122FFFE334455).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:Pattern=`^[0-9A-F]{16}$`
	DeviceIDs []string `json:"deviceIds,omitempty"`

	// tags selects stations whose twin tag <key> equals <value> for every
	// entry. Keys are letters, digits and underscores (up to 64); values are
	// up to 128 characters.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[A-Za-z][A-Za-z0-9_]{0,63}$'))",message="selector.tags keys must start with a letter and hold only letters, digits and underscores, at most 64 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 128)",message="selector.tags values must be at most 128 characters"
	// +kubebuilder:validation:XValidation:rule="!('stationfleet' in self)",message="selector.tags must not use the key stationfleet: it is reserved for the operator's own records"
	Tags map[string]string `json:"tags,omitempty"`
}

// RolloutStrategy is how a rollout walks through its stations.
// +kubebuilder:validation:XValidation:rule="!has(self.failurePolicy) || self.failurePolicy != 'Abort' || has(self.maxFailures)",message="strategy.failurePolicy Abort needs strategy.maxFailures: without a limit no number of failures passes it, so the rollout would never abort"
type RolloutStrategy struct {
	// steps are walked in order: a batch step writes the next stations' twins
	// and waits until each has an outcome; a pause step waits for its
	// duration, or until resumed when it has none.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Steps []RolloutStep `json:"steps"`

	// maxFailures is how many stations may fail before the rollout stops by
	// itself: a count ("5" or 5) or a percentage of the targets ("5%").
	// Passing it halts (or, with failurePolicy Abort, aborts) the rollout;
	// 0 stops on the first failure. A halt follows from it: raising it past
	// the current failures lets a halted rollout go on.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=10
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$') || self.matches('^[0-9]+$')",message="strategy.maxFailures must be a count (0 or more) or a percentage from 0% to 100%"
	MaxFailures *intstr.IntOrString `json:"maxFailures,omitempty"`

	// failurePolicy is what the rollout does when its failures pass
	// maxFailures: Halt writes no further batch and waits for a person
	// (raise maxFailures, retry the failed stations, abort or delete);
	// Abort restores, at once, the previous firmware of every station the
	// rollout wrote, as spec.abort does, and ends Aborted with the reason
	// FailureLimitAborted. The controller's decision to abort is kept in
	// status.abortReason and cannot be undone.
	// +optional
	// +kubebuilder:default=Halt
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// progressDeadline is how long a station may take, once its twin is
	// written, to report the new package before it is TimedOut. Stations
	// poll CUPS every 24 hours after a success, so the default is 26h.
	// At least one minute.
	// +optional
	// +kubebuilder:default="26h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="strategy.progressDeadline must be at least 1m"
	ProgressDeadline *metav1.Duration `json:"progressDeadline,omitempty"`

	// maxUpdateAttempts is how many times the CUPS server may send the update
	// to a station that keeps reporting its old package before the station is
	// Failed with reason NotApplied.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxUpdateAttempts *int32 `json:"maxUpdateAttempts,omitempty"`

	// windows are the times a batch step may start (write the first twin
	// of its batch): a batch starts only while one of them is open, and
	// outside them the rollout waits (phase Paused, reason OutsideWindow).
	// A batch already started goes on whatever the time, and stations
	// poll CUPS on their own clock, so windows gate when batches are
	// written, not when stations update. Pause steps are not affected.
	// Empty: a batch may start at any time.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	Windows []BatchWindow `json:"windows,omitempty"`

	// bakeTime is how long a station must stay healthy after it first
	// reports the new package before it counts as Updated. Until then it is
	// in progress (status.baking). A station that keeps coming back to CUPS
	// at a steady short spacing within the bake time cannot reach its
	// network server and is Failed Unhealthy; one that reports its previous
	// package again is Failed RolledBack. Absent or 0 turns it off: a
	// station is Updated at its first report. At most 168h; keep it below
	// twice the stations' CUPS_OKSYNC_INTV (24h by default), or stations
	// that poll at their own short interval look unhealthy.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="strategy.bakeTime must be a duration such as 30m, 2h or 1h30m (units h, m, s)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) <= duration('168h')",message="strategy.bakeTime must be at most 168h (one week)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) == duration('0s') || duration(self) >= duration('1s')",message="strategy.bakeTime must be 0 (off) or at least 1s: the CUPS server keeps it in whole seconds"
	BakeTime *metav1.Duration `json:"bakeTime,omitempty"`
}

// BatchWindow is a recurring time span in which a batch may start, as in
// hawkBit's and AWS IoT Jobs' maintenance windows: it opens at each
// activation of its cron schedule, in its time zone, and stays open for its
// duration.
type BatchWindow struct {
	// schedule is a cron expression of 5 fields, minute hour day-of-month
	// month day-of-week, as a Kubernetes CronJob's: "0 2 * * *" opens the
	// window at 02:00 every day, "0 22 * * MON-FRI" at 22:00 on weekdays.
	// Fields take numbers, ranges (1-5), lists (1,3), steps (*/15) and
	// the names JAN-DEC and SUN-SAT. Evaluated in timeZone.
	// +required
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('@')",message="windows[].schedule must be 5 cron fields (minute hour day-of-month month day-of-week), not a descriptor such as @daily: write 0 0 * * * for @daily"
	// +kubebuilder:validation:XValidation:rule="!self.contains('TZ=')",message="windows[].schedule must not name a time zone (TZ=...): set windows[].timeZone instead"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.contains('TZ=') || self.matches('^[0-9A-Za-z*?,/ -]+$')",message="windows[].schedule may contain only digits, the names JAN-DEC and SUN-SAT, the characters * ? , - / and spaces between fields"
	// +kubebuilder:validation:XValidation:rule="self.startsWith('@') || self.contains('TZ=') || !self.matches('^[0-9A-Za-z*?,/ -]+$') || self.matches('^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ *$')",message="windows[].schedule must have exactly 5 fields separated by spaces: minute hour day-of-month month day-of-week, for example 0 2 * * *"
	Schedule string `json:"schedule"`

	// duration is how long the window stays open after each activation of
	// its schedule, as elapsed time (a 2h window that opens at 01:00 on
	// the night the clocks go forward closes at 04:00 local time). From 1m
	// to 168h (7 days). A window whose duration reaches its schedule's
	// next activation stays open.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('168h')",message="windows[].duration must be from 1m to 168h (7 days)"
	Duration metav1.Duration `json:"duration"`

	// timeZone is the IANA time zone the schedule is evaluated in, for
	// example Europe/Berlin or America/New_York; UTC by default. Windows
	// follow the zone's daylight saving time: an activation at a local
	// time the clocks skip does not happen that day, one at a local time
	// that occurs twice happens twice. A name the manager's time zone
	// database does not know stalls the rollout before any twin is
	// written (reason InvalidStrategy).
	// +optional
	// +kubebuilder:default="UTC"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$')",message="windows[].timeZone must be an IANA time zone name such as Europe/Berlin or UTC: letters, digits, '_', '+', '-' and '/' between parts"
	// +kubebuilder:validation:XValidation:rule="self != 'Local'",message="windows[].timeZone must name a zone: Local would be the manager's own zone, which differs between clusters"
	TimeZone string `json:"timeZone,omitempty"`
}

// FailurePolicy is what a rollout does when its failures pass maxFailures.
// +kubebuilder:validation:Enum=Halt;Abort
type FailurePolicy string

// The failure policies.
const (
	// FailurePolicyHalt writes no further batch until the failures are
	// within maxFailures again (the default).
	FailurePolicyHalt FailurePolicy = "Halt"
	// FailurePolicyAbort restores the previous firmware of every station
	// the rollout wrote, by itself.
	FailurePolicyAbort FailurePolicy = "Abort"
)

// RolloutStep is exactly one of a batch, a pause or an analysis.
// +kubebuilder:validation:XValidation:rule="[has(self.batch), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",message="each step must be exactly one of batch, pause or analysis"
type RolloutStep struct {
	// batch is how many more stations this step updates: a count (1 or "1")
	// or a percentage of all targets ("10%", from 1% to 100%). A percentage
	// of all targets (rounded up). A batch never holds more than the stations
	// not yet written, so "100%" takes every remaining one.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=10
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : (self.matches('^(100|[1-9][0-9]?)%$') || (self.matches('^[0-9]+$') && int(self) >= 1))",message="batch must be a positive count or a percentage from 1% to 100%"
	Batch *intstr.IntOrString `json:"batch,omitempty"`

	// pause waits before the next step: for pause.duration, or until resumed
	// (the resume annotation or `kubectl stationfleet resume`) when it has no
	// duration.
	// +optional
	Pause *PauseStep `json:"pause,omitempty"`

	// analysis asks Prometheus, count times at an interval, whether the
	// stations written so far are well, before the next step: a passed
	// analysis moves on, a failed one halts (or aborts) the rollout. See
	// AnalysisStep.
	// +optional
	Analysis *AnalysisStep `json:"analysis,omitempty"`
}

// PauseStep waits before the next step.
type PauseStep struct {
	// duration is how long to wait; empty waits until resumed.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// RolloutPhase is the coarse state of a rollout.
// +kubebuilder:validation:Enum=Pending;Progressing;Paused;Halted;Completed;Aborting;Aborted
type RolloutPhase string

// The phases of a rollout.
const (
	// PhasePending: accepted, not yet started (preflight not passed).
	PhasePending RolloutPhase = "Pending"
	// PhaseProgressing: writing twins or waiting for stations.
	PhaseProgressing RolloutPhase = "Progressing"
	// PhasePaused: waiting in a pause step or because spec.paused is true.
	PhasePaused RolloutPhase = "Paused"
	// PhaseHalted: failures passed maxFailures; no further batch is written.
	PhaseHalted RolloutPhase = "Halted"
	// PhaseCompleted: every step done and every station has an outcome.
	PhaseCompleted RolloutPhase = "Completed"
	// PhaseAborting: restoring the previous firmware fields.
	PhaseAborting RolloutPhase = "Aborting"
	// PhaseAborted: every station this rollout wrote is restored.
	PhaseAborted RolloutPhase = "Aborted"
)

// StationOutcome is what happened to one station.
type StationOutcome string

// The outcomes of a station.
const (
	OutcomePending    StationOutcome = "Pending"
	OutcomeInProgress StationOutcome = "InProgress"
	OutcomeUpdated    StationOutcome = "Updated"
	OutcomeFailed     StationOutcome = "Failed"
	OutcomeSkipped    StationOutcome = "Skipped"
)

// MaxFailuresListed bounds status.failures.
const MaxFailuresListed = 20

// FirmwareRolloutStatus is the observed state of a FirmwareRollout. It stays
// small at any fleet size: counts and per-batch summaries, never a list of
// every station.
type FirmwareRolloutStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is the coarse state of the rollout.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`

	// conditions are kstatus conditions: Ready always, Reconciling and
	// Stalled while true.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// targets is how many stations the rollout selects.
	// +optional
	Targets int32 `json:"targets"`

	// The targets by outcome: pending, inProgress, updated, failed, skipped.
	// Every counter is always stored, 0 included.
	StationCounts `json:",inline"`

	// skippedNotOnUpgradePath is how many of the skipped stations report a
	// package that firmware.upgradeFrom does not list (they are not sent
	// the update and their twins are left as they were).
	// +optional
	SkippedNotOnUpgradePath int32 `json:"skippedNotOnUpgradePath,omitempty"`

	// progress is "updated/targets", for kubectl get.
	// +optional
	Progress string `json:"progress,omitempty"`

	// baking is how many stations reported the new package and are still
	// within strategy.bakeTime; they are counted in inProgress too.
	// +optional
	Baking int32 `json:"baking"`

	// currentStep is the 1-based index of the step the rollout is in; 0
	// before it starts. It equals the number of steps once they are done.
	// +optional
	CurrentStep int32 `json:"currentStep"`

	// stepStartTime is when the current step started (a timed pause ends at
	// stepStartTime + duration).
	// +optional
	StepStartTime *metav1.Time `json:"stepStartTime,omitempty"`

	// batches summarises each batch written so far.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Batches []BatchStatus `json:"batches,omitempty"`

	// failures lists the latest failed stations, newest first, at most 20.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Failures []StationFailure `json:"failures,omitempty"`

	// lastHandledResume is the value of the resume annotation last acted on.
	// +optional
	LastHandledResume string `json:"lastHandledResume,omitempty"`

	// lastHandledRetry is the value of the retry annotation last acted on.
	// +optional
	LastHandledRetry string `json:"lastHandledRetry,omitempty"`

	// abortReason, when set, is why the controller aborted the rollout by
	// itself: FailureLimitAborted (failures passed maxFailures under
	// failurePolicy Abort) or AnalysisAborted (an analysis step with
	// onFailure Abort failed). The controller keeps its decision here, not in
	// spec (Git owns spec), so that a restarted controller keeps aborting;
	// it is never cleared. Empty for a rollout aborted through spec.abort.
	// +optional
	// +kubebuilder:validation:Enum=FailureLimitAborted;AnalysisAborted
	AbortReason string `json:"abortReason,omitempty"`

	// abortMessage says, for a person, why the controller aborted the
	// rollout by itself: how many stations failed against which limit.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	AbortMessage string `json:"abortMessage,omitempty"`

	// startTime is when the first twin was written.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the rollout completed, halted or was aborted.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// nextWindow is when the next batch window opens, set while the
	// rollout waits for one (reason OutsideWindow) and removed otherwise.
	// +optional
	NextWindow *metav1.Time `json:"nextWindow,omitempty"`

	// analyses is the state of each analysis step the rollout reached, in
	// step order.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Analyses []AnalysisStatus `json:"analyses,omitempty"`
}

// BatchStatus summarises one batch. A batch holds only stations the rollout
// wrote: a station owned by another active rollout is in no batch and is
// counted in the rollout's status.skipped.
type BatchStatus struct {
	// step is the 1-based index of the step that made the batch.
	Step int32 `json:"step"`
	// size is how many stations the batch holds: while the batch is being
	// written, the planned size (the rest are not yet written).
	Size int32 `json:"size"`
	// The batch's stations by outcome: inProgress, updated, failed.
	WrittenCounts `json:",inline"`
	// startTime is when the batch's twins were written.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime is when every station of the batch had an outcome.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// StationFailure is one failed station.
type StationFailure struct {
	// deviceId is the station's IoT Hub device id.
	DeviceID string `json:"deviceId"`
	// reason is why it failed: KeyMismatch, ModelMismatch, NotApplied,
	// TimedOut, Unhealthy or RolledBack.
	Reason FailureReason `json:"reason"`
	// message says what happened, for a person.
	// +optional
	Message string `json:"message,omitempty"`
	// time is when the failure was noticed.
	Time metav1.Time `json:"time"`
}

// FirmwareRollout rolls a signed firmware package out to LoRa Basics Station
// gateways through their IoT Hub device twins, batch by batch.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fwr,categories=stationfleet
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Updated",type=string,JSONPath=`.status.progress`,description="updated/targets"
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`
// +kubebuilder:printcolumn:name="Baking",type=integer,JSONPath=`.status.baking`,priority=1,description="stations within their bake time"
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.currentStep`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Next Window",type=string,priority=1,JSONPath=`.status.nextWindow`,description="when the batch window the rollout waits for opens"
type FirmwareRollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the user wants.
	// +required
	Spec FirmwareRolloutSpec `json:"spec"`

	// status is what the controller observed.
	// +optional
	Status FirmwareRolloutStatus `json:"status,omitempty"`
}

// FirmwareRolloutList is a list of FirmwareRollouts.
//
// +kubebuilder:object:root=true
type FirmwareRolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FirmwareRollout `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FirmwareRollout{}, &FirmwareRolloutList{})
}
