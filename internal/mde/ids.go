package mde

import (
	"fmt"
	"regexp"
)

// Ids are validated before they are put in a URL path: an alert or hunt row
// is attacker-influenced, and "../machines/x/isolate" must never become a path.
var (
	// Alert ids seen: da637472900382838869_1364969609, da638765432109876543_-1029384756,
	// ar… (automated investigation), and plain GUID-like ids from other sources.
	alertIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$`)
	// Machine ids are 40 lowercase hex characters (SHA-1 shaped).
	machineIDRe = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	// Machine action ids are GUIDs.
	guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// Machine tags: printable, no control characters; MDE limits tags to 200 characters.
	tagRe = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,200}$`)
)

// InvalidIDError is returned when an id fails validation.
type InvalidIDError struct {
	Kind  string
	Value string
}

func (e *InvalidIDError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "…"
	}
	return fmt.Sprintf("invalid %s id %q", e.Kind, v)
}

// ValidateAlertID checks an alert id before it is used in a URL path.
func ValidateAlertID(id string) error {
	if !alertIDRe.MatchString(id) {
		return &InvalidIDError{Kind: "alert", Value: id}
	}
	return nil
}

// ValidateMachineID checks a machine (device) id: 40 hex characters.
func ValidateMachineID(id string) error {
	if !machineIDRe.MatchString(id) {
		return &InvalidIDError{Kind: "machine", Value: id}
	}
	return nil
}

// ValidateActionID checks a machine action id: a GUID.
func ValidateActionID(id string) error {
	if !guidRe.MatchString(id) {
		return &InvalidIDError{Kind: "machine action", Value: id}
	}
	return nil
}

// ValidateTag checks a machine tag value.
func ValidateTag(tag string) error {
	if !tagRe.MatchString(tag) {
		return &InvalidIDError{Kind: "tag", Value: tag}
	}
	return nil
}
