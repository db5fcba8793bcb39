package v1alpha1

// TEMPORARY until h-api merges.
const (
	ReasonInvalidStrategy     = "InvalidStrategy"
	ReasonResumed             = "Resumed"
	ReasonVerified            = "Verified"
	ConditionFirmwareVerified = "FirmwareVerified"
)
