package v1alpha1

// RuleMessages are the messages of the firmware CEL rules that the Go
// checks in validation.go repeat, for validation_test.go.
var RuleMessages = []string{
	msgPackagePadded, msgPackageControl, msgURLScheme, msgURLCharacters, msgURLQuery, msgURLUserInfo,
	msgURLAzblob, msgURLContainer, msgURLHTTPS, msgURLFile, msgURLSegments, msgModelCharacters,
	msgKeyRefBoth, msgKeyRefName, msgKeyRefKey,
}
