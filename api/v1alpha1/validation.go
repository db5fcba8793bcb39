package v1alpha1

import (
	"errors"
	"regexp"
	"strings"
	"unicode"
)

// The checks below are the CEL rules of FirmwareSpec, in Go, with the same
// messages, for tools that build a rollout (kubectl stationfleet publish) and
// must refuse before they upload what the API server would refuse after.
// api/v1alpha1/validation_test.go runs both over the same values against a
// real API server and requires the same verdict and message: change a rule
// in one place only and that test fails.

// Messages of the firmware rules, as the API server reports them.
const (
	msgPackagePadded     = "firmware.package must not start or end with white space: the station trims version.txt, so it would never match"
	msgPackageControl    = "firmware.package must not contain a newline, a tab or any other control or invisible character: it is compared with the station's version.txt and written to twins and logs"
	msgURLScheme         = "firmware.url must start with azblob://, https:// or file://"
	msgURLCharacters     = "firmware.url must not contain white space, control characters or backslashes (write a space in a blob name as %20)"
	msgURLQuery          = "firmware.url must not have a query (?...) or a fragment (#...): a SAS token or other credential belongs in the manager's storage settings, never in a rollout"
	msgURLUserInfo       = "firmware.url must not carry user info (user:password@): credentials belong in the manager's storage settings, never in a rollout"
	msgURLAzblob         = "firmware.url azblob:// needs a container and a blob path: azblob://<container>/<path/to/blob>"
	msgURLContainer      = "firmware.url: an azblob:// container name is 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit"
	msgURLHTTPS          = "firmware.url https:// needs a host, a container and a blob path: https://<account>.blob.core.windows.net/<container>/<path/to/blob>"
	msgURLFile           = "firmware.url file:// needs the absolute path of a file: file:///<path/to/file>"
	msgURLSegments       = "firmware.url must not have empty (//), '.' or '..' path segments"
	msgModelCharacters   = "firmware.model must not contain white space or control characters: it is compared with the model the station reports, for example linux"
	msgKeyRefBoth        = "firmware.publicKeyRef needs both name and key: the ConfigMap in the rollout's namespace and the key that holds the public key"
	msgKeyRefName        = "firmware.publicKeyRef.name must be a ConfigMap's name: lower-case letters, digits, '-' and '.'"
	msgKeyRefKey         = "firmware.publicKeyRef.key must be a key of the ConfigMap's data: letters, digits, '-', '_' and '.'"
	maxKeyRefLen         = 253
	maxPackageLen        = 64
	minURLLen, maxURLLen = 8, 1024
	maxModelLen          = 64
)

// The regular expressions of the CEL rules (CEL's matches() is RE2, as Go's
// regexp, and unanchored).
var (
	rePackageControl = regexp.MustCompile(`[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]`)
	reURLCharacters  = regexp.MustCompile(`[\s\p{Cc}\p{Cf}\p{Z}\\]`)
	reURLUserInfo    = regexp.MustCompile(`^[a-z]+://[^/]*@`)
	reAzblob         = regexp.MustCompile(`^azblob://[^/]+/[^/]`)
	reAzblobHasCont  = regexp.MustCompile(`^azblob://[^/]`)
	reAzblobSpecial  = regexp.MustCompile(`^azblob://[$](root|web)(/|$)`)
	reAzblobContLen  = regexp.MustCompile(`^azblob://[a-z0-9-]{3,63}(/|$)`)
	reAzblobContName = regexp.MustCompile(`^azblob://[a-z0-9]+(-[a-z0-9]+)*(/|$)`)
	reHTTPS          = regexp.MustCompile(`^https://[^/]+/[^/]+/[^/]`)
	reFile           = regexp.MustCompile(`^file://(localhost)?/[^/]`)
	reDotSegment     = regexp.MustCompile(`^[a-z]+://[^/]*/(.*/)?[.]{1,2}(/|$)`)
	reEmptySegment   = regexp.MustCompile(`^[a-z]+://.*//`)
	reModel          = regexp.MustCompile(`[\s\p{Cc}\p{Cf}\p{Z}]`)
	reKeyRefName     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	reKeyRefKey      = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

// ValidatePackage checks spec.firmware.package as the API server does.
func ValidatePackage(pkg string) error {
	var errs []error
	if pkg == "" {
		errs = append(errs, errors.New("firmware.package is required"))
	}
	if n := len([]rune(pkg)); n > maxPackageLen {
		errs = append(errs, errors.New("firmware.package must be at most 64 characters"))
	}
	if strings.TrimFunc(pkg, unicode.IsSpace) != pkg {
		errs = append(errs, errors.New(msgPackagePadded))
	}
	if rePackageControl.MatchString(pkg) {
		errs = append(errs, errors.New(msgPackageControl))
	}
	return errors.Join(errs...)
}

// ValidateFirmwareURL checks spec.firmware.url as the API server does.
func ValidateFirmwareURL(u string) error {
	var errs []error
	add := func(bad bool, msg string) {
		if bad {
			errs = append(errs, errors.New(msg))
		}
	}
	n := len([]rune(u))
	add(n < minURLLen, "firmware.url must be at least 8 characters")
	add(n > maxURLLen, "firmware.url must be at most 1024 characters")
	azblob, https, file := strings.HasPrefix(u, "azblob://"), strings.HasPrefix(u, "https://"), strings.HasPrefix(u, "file://")
	add(!azblob && !https && !file, msgURLScheme)
	add(reURLCharacters.MatchString(u), msgURLCharacters)
	add(strings.ContainsAny(u, "?#"), msgURLQuery)
	add(reURLUserInfo.MatchString(u), msgURLUserInfo)
	add(azblob && (!reAzblob.MatchString(u) || strings.HasSuffix(u, "/")), msgURLAzblob)
	add(reAzblobHasCont.MatchString(u) && !reAzblobSpecial.MatchString(u) &&
		!(reAzblobContLen.MatchString(u) && reAzblobContName.MatchString(u)), msgURLContainer)
	add(https && (!reHTTPS.MatchString(u) || strings.HasSuffix(u, "/")), msgURLHTTPS)
	add(file && (!reFile.MatchString(u) || strings.HasSuffix(u, "/")), msgURLFile)
	add(reDotSegment.MatchString(u) || reEmptySegment.MatchString(u), msgURLSegments)
	return errors.Join(errs...)
}

// ValidateModel checks spec.firmware.model as the API server does.
func ValidateModel(model string) error {
	var errs []error
	if len([]rune(model)) > maxModelLen {
		errs = append(errs, errors.New("firmware.model must be at most 64 characters"))
	}
	if reModel.MatchString(model) {
		errs = append(errs, errors.New(msgModelCharacters))
	}
	return errors.Join(errs...)
}

// ValidatePublicKeyRef checks spec.firmware.publicKeyRef (a ConfigMap's
// name and key) as the API server does.
func ValidatePublicKeyRef(ref ConfigMapKeySelector) error {
	var errs []error
	if ref.Name == "" || ref.Key == "" {
		errs = append(errs, errors.New(msgKeyRefBoth))
	}
	if len([]rune(ref.Name)) > maxKeyRefLen {
		errs = append(errs, errors.New("firmware.publicKeyRef.name must be at most 253 characters"))
	}
	if ref.Name != "" && !reKeyRefName.MatchString(ref.Name) {
		errs = append(errs, errors.New(msgKeyRefName))
	}
	if len([]rune(ref.Key)) > maxKeyRefLen {
		errs = append(errs, errors.New("firmware.publicKeyRef.key must be at most 253 characters"))
	}
	if ref.Key != "" && !reKeyRefKey.MatchString(ref.Key) {
		errs = append(errs, errors.New(msgKeyRefKey))
	}
	return errors.Join(errs...)
}
