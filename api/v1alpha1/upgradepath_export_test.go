package v1alpha1

// UpgradeFromMessages are the messages of the firmware.upgradeFrom CEL
// rules that ValidateUpgradeFrom must give exactly when the API server does.
var UpgradeFromMessages = []string{msgUpgradeFromPadded, msgUpgradeFromControl, msgUpgradeFromTarget}
