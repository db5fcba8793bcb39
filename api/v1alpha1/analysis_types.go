package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnalysisStep asks Prometheus whether the stations written so far are well
// before the rollout goes on, in the manner of Argo Rollouts'
// AnalysisTemplate: query is run count times, every interval, and each
// result is checked with successCondition. The analysis fails as soon as
// more than failureLimit measurements failed, or more than
// consecutiveErrorLimit queries in a row could not be measured; it passes
// when count measurements are taken without that.
//
// query is a Go template: {{stations}} is a regular expression matching
// the device ids (16 upper-case hex digits) of every station the rollout
// wrote so far, {{batch}} the number of the last batch written,
// {{step}} this step's 1-based index, {{rollout}} and {{namespace}} the
// rollout's name and namespace, {{package}} the firmware package, and
// {{label "key"}} the value of one of the rollout's labels. Values are
// inserted as they are, so quote them in PromQL: eui=~"{{stations}}".
//
// successCondition is a CEL expression over the result that is true when
// the measurement passes. result is a number when the query returns a
// scalar or a vector of one sample, otherwise the list of samples;
// results is always the list of samples, each a map with "metric" (the
// labels, a map of strings) and "value" (a number). For example
// `result >= 0.95` or `results.all(r, r.value >= 0.95)`.
// +kubebuilder:validation:XValidation:rule="!has(self.failureLimit) || !has(self.count) || self.failureLimit < self.count",message="analysis.failureLimit must be less than analysis.count: with as many failures allowed as measurements taken, the analysis could never fail"
type AnalysisStep struct {
	// name is a short name for the analysis, shown in status, Events and
	// the CLI (for example uplink-rate); the step's index when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="analysis.name must be lower-case letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name,omitempty"`

	// prometheus is the server the query is sent to.
	// +required
	Prometheus PrometheusSource `json:"prometheus"`

	// query is the PromQL query, a template (see AnalysisStep). It must
	// return a scalar or an instant vector.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.trim() != ''",message="analysis.query must not be blank"
	Query string `json:"query"`

	// successCondition is the CEL expression a measurement must make true to
	// pass (see AnalysisStep); it must compile to a bool.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	SuccessCondition string `json:"successCondition"`

	// interval is the time between two measurements, from 1s to 24h.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="analysis.interval must be from 1s to 24h"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// initialDelay is how long to wait after the step starts before the
	// first measurement (stations need time to report new metrics), up to
	// 24h; 0 by default.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="analysis.initialDelay must be at most 24h"
	InitialDelay *metav1.Duration `json:"initialDelay,omitempty"`

	// count is how many measurements the analysis takes, from 1 to 100.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Count *int32 `json:"count,omitempty"`

	// failureLimit is how many measurements may fail (the condition is
	// false) before the analysis fails; 0 (the default) fails it on the
	// first.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=99
	FailureLimit *int32 `json:"failureLimit,omitempty"`

	// consecutiveErrorLimit is how many measurements in a row may end in an
	// error (Prometheus unreachable or refusing the query, a result of no
	// sample, a condition that cannot be evaluated on the result) before the
	// analysis fails. An error is neither a pass nor a failure and does not
	// count towards count; 4 by default, as in Argo Rollouts.
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	ConsecutiveErrorLimit *int32 `json:"consecutiveErrorLimit,omitempty"`

	// onFailure is what a failed analysis does: Halt (the default) writes
	// no further batch and waits for a person (resume runs the analysis
	// again; abort restores; delete releases); Abort restores, at once, the
	// previous firmware of every station the rollout wrote, as spec.abort
	// does, and ends Aborted with the reason AnalysisAborted.
	// +optional
	// +kubebuilder:default=Halt
	OnFailure FailurePolicy `json:"onFailure,omitempty"`
}

// PrometheusSource is a Prometheus server (or anything that serves its HTTP
// API, /api/v1/query).
type PrometheusSource struct {
	// address is the server's base URL, http:// or https://, for example
	// http://prometheus.monitoring:9090. Credentials never go here: use
	// secretRef.
	// +required
	// +kubebuilder:validation:MinLength=8
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('http://') || self.startsWith('https://')",message="analysis.prometheus.address must start with http:// or https://"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-z]+://[^/]*@')",message="analysis.prometheus.address must not carry user info (user:password@): put credentials in the Secret named by analysis.prometheus.secretRef"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="analysis.prometheus.address must not have a query (?...) or a fragment (#...)"
	// +kubebuilder:validation:XValidation:rule="!self.matches(r'[\\s\\p{Cc}\\p{Cf}\\p{Z}\\\\]')",message="analysis.prometheus.address must not contain white space, control characters or backslashes"
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/]+')",message="analysis.prometheus.address needs a host: http://<host>:<port>"
	Address string `json:"address"`

	// secretRef names a Secret in the rollout's namespace that holds the
	// credentials: "token" (a bearer token), or "username" and "password"
	// (basic auth), and optionally "ca.crt" (PEM CA certificates to trust
	// for https). The manager reads it on each measurement; its content
	// never appears in status, Events or logs.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`

	// timeout bounds one query, from 1s to 5m; 30s by default.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="analysis.prometheus.timeout must be from 1s to 5m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// LocalObjectReference names an object in the rollout's namespace.
type LocalObjectReference struct {
	// name is the object's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretRef.name must be a Secret's name: lower-case letters, digits, '-' and '.'"
	Name string `json:"name"`
}

// Keys of the analysis credentials Secret.
const (
	// AnalysisSecretToken is the bearer token key.
	AnalysisSecretToken = "token"
	// AnalysisSecretUsername is the basic auth user name key.
	AnalysisSecretUsername = "username"
	// AnalysisSecretPassword is the basic auth password key.
	AnalysisSecretPassword = "password"
	// AnalysisSecretCA is the PEM CA bundle key.
	AnalysisSecretCA = "ca.crt"
)

// AnalysisPhase is the state of one analysis step.
// +kubebuilder:validation:Enum=Running;Successful;Failed
type AnalysisPhase string

// The phases of an analysis.
const (
	// AnalysisRunning: measurements are still being taken.
	AnalysisRunning AnalysisPhase = "Running"
	// AnalysisSuccessful: count measurements passed within the limits.
	AnalysisSuccessful AnalysisPhase = "Successful"
	// AnalysisFailed: more than failureLimit measurements failed, or more
	// than consecutiveErrorLimit errors in a row.
	AnalysisFailed AnalysisPhase = "Failed"
)

// MeasurementPhase is the verdict of one measurement.
// +kubebuilder:validation:Enum=Successful;Failed;Error
type MeasurementPhase string

// The verdicts of a measurement.
const (
	// MeasurementSuccessful: the condition was true.
	MeasurementSuccessful MeasurementPhase = "Successful"
	// MeasurementFailed: the condition was false.
	MeasurementFailed MeasurementPhase = "Failed"
	// MeasurementError: no verdict (query error, no data, the condition
	// could not be evaluated on the result).
	MeasurementError MeasurementPhase = "Error"
)

// MaxMeasurementsListed bounds status.analyses[].measurements: the newest
// are kept, the counters count them all.
const MaxMeasurementsListed = 5

// AnalysisStatus is the state of one analysis step, kept after it ends.
type AnalysisStatus struct {
	// step is the 1-based index of the analysis step.
	Step int32 `json:"step"`
	// name is the analysis's name (spec), if any.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name,omitempty"`
	// phase is Running, Successful or Failed.
	Phase AnalysisPhase `json:"phase"`
	// startTime is when this run of the analysis started (a resume after a
	// failure starts a new run).
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// successful, failed and errors count the measurements of this run by
	// verdict; consecutiveErrors counts the errors since the last verdict.
	Successful        int32 `json:"successful"`
	Failed            int32 `json:"failed"`
	Errors            int32 `json:"errors"`
	ConsecutiveErrors int32 `json:"consecutiveErrors"`
	// message says, for a person, where the analysis stands or why it
	// failed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// measurements are the newest measurements of this run, oldest first,
	// at most 5.
	// +optional
	// +kubebuilder:validation:MaxItems=5
	Measurements []AnalysisMeasurement `json:"measurements,omitempty"`
}

// AnalysisMeasurement is one run of an analysis's query.
type AnalysisMeasurement struct {
	// scheduledAt is when the measurement was due: it identifies the
	// measurement, so a manager that restarts takes it once. Microsecond
	// precision: intervals may be as short as a second.
	ScheduledAt metav1.MicroTime `json:"scheduledAt"`
	// time is when the query was evaluated (the next measurement is due an
	// interval later).
	Time metav1.MicroTime `json:"time"`
	// phase is the verdict: Successful, Failed or Error.
	Phase MeasurementPhase `json:"phase"`
	// value is the query's result as text (truncated).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Value string `json:"value,omitempty"`
	// message says why a measurement ended in an error (truncated).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}
