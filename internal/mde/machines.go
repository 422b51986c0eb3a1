package mde

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// machineNameRe accepts a host name or FQDN (letters, digits, '-', '_';
// labels of at most 63 characters).
var machineNameRe = regexp.MustCompile(`^[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,62}))*$`)

// ValidateMachineName checks a computer name before it goes into an OData filter.
func ValidateMachineName(name string) error {
	if len(name) > 253 || !machineNameRe.MatchString(name) {
		return &InvalidIDError{Kind: "machine name", Value: name}
	}
	return nil
}

// MachineLookupError is FindMachineByName's refusal: no machine or more than
// one has the name. It matches ErrMachineNotFound (and ErrNotFound) or
// ErrMachineAmbiguous.
type MachineLookupError struct {
	Name  string
	Count int
	// IDs lists up to ten of the matching machine ids.
	IDs []string
}

// Sentinels for MachineLookupError.
var (
	ErrMachineNotFound  error = sentinel{text: "mde: no machine with that name"}
	ErrMachineAmbiguous error = sentinel{text: "mde: several machines with that name"}
)

func (e *MachineLookupError) Error() string {
	if e.Count == 0 {
		return fmt.Sprintf("no machine named %q", e.Name)
	}
	return fmt.Sprintf("%d machines named %q (%s): refusing to pick one", e.Count, e.Name, strings.Join(e.IDs, ", "))
}

// Is implements errors.Is matching.
func (e *MachineLookupError) Is(target error) bool {
	switch target {
	case ErrMachineNotFound, ErrNotFound:
		return e.Count == 0
	case ErrMachineAmbiguous:
		return e.Count > 1
	}
	return false
}

// GetMachine fetches one machine by its 40-hex id.
func (c *Client) GetMachine(ctx context.Context, id string) (*Machine, error) {
	if err := ValidateMachineID(id); err != nil {
		return nil, fmt.Errorf("getting machine: %w", err)
	}
	var m Machine
	if err := c.send(ctx, "GetMachine", FamilyMachines, http.MethodGet, c.endpoint(nil, "machines", id), nil, []int{http.StatusOK}, &m, nil); err != nil {
		return nil, fmt.Errorf("getting machine %s: %w", id, err)
	}
	return &m, nil
}

// FindMachineByName returns the one machine whose computerDnsName equals
// name (case-insensitive), or whose first DNS label equals name when name
// has no dot. Zero or several matches give a *MachineLookupError: a response
// action must never guess which device is meant.
func (c *Client) FindMachineByName(ctx context.Context, name string) (*Machine, error) {
	if err := ValidateMachineName(name); err != nil {
		return nil, fmt.Errorf("finding machine by name: %w", err)
	}
	lname := strings.ToLower(name)
	q := query(nil).add("$filter", "startswith(computerDnsName,"+odataString(lname)+")")
	ms, err := list(ctx, c, listSpec[Machine]{
		op: "FindMachineByName", fam: FamilyMachines, segments: []string{"machines"}, q: q,
		pageSize: 100, limit: 1000, key: func(m Machine) string { return m.ID }, emptyOn404: true,
	})
	if err != nil {
		return nil, fmt.Errorf("finding machine %q: %w", name, err)
	}
	var hits []Machine
	for _, m := range ms {
		dns := strings.ToLower(m.ComputerDNSName)
		short, _, _ := strings.Cut(dns, ".")
		if dns == lname || (!strings.Contains(lname, ".") && short == lname) {
			hits = append(hits, m)
		}
	}
	if len(hits) == 1 {
		return &hits[0], nil
	}
	le := &MachineLookupError{Name: name, Count: len(hits)}
	for i, m := range hits {
		if i == 10 {
			break
		}
		le.IDs = append(le.IDs, m.ID)
	}
	return nil, fmt.Errorf("finding machine %q: %w", name, le)
}

// ListMachinesByTag returns the machines carrying tag.
func (c *Client) ListMachinesByTag(ctx context.Context, tag string) ([]Machine, error) {
	if err := ValidateTag(tag); err != nil {
		return nil, fmt.Errorf("listing machines by tag: %w", err)
	}
	q := query(nil).add("$filter", "machineTags/any(tag: tag eq "+odataString(tag)+")")
	ms, err := list(ctx, c, listSpec[Machine]{
		op: "ListMachinesByTag", fam: FamilyMachines, segments: []string{"machines"}, q: q,
		key: func(m Machine) string { return m.ID }, emptyOn404: true,
	})
	if err != nil {
		return ms, fmt.Errorf("listing machines with tag %q: %w", tag, err)
	}
	return ms, nil
}

type tagBody struct {
	Value  string `json:"Value"`
	Action string `json:"Action"`
}

// AddMachineTag adds a tag and returns the updated machine.
func (c *Client) AddMachineTag(ctx context.Context, id, tag string) (*Machine, error) {
	return c.tag(ctx, "AddMachineTag", "adding tag to machine", id, tag, "Add")
}

// RemoveMachineTag removes a tag and returns the updated machine.
func (c *Client) RemoveMachineTag(ctx context.Context, id, tag string) (*Machine, error) {
	return c.tag(ctx, "RemoveMachineTag", "removing tag from machine", id, tag, "Remove")
}

func (c *Client) tag(ctx context.Context, op, verb, id, tag, action string) (*Machine, error) {
	if err := ValidateMachineID(id); err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	if err := ValidateTag(tag); err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	var m Machine
	if err := c.send(ctx, op, FamilyMachines, http.MethodPost, c.endpoint(nil, "machines", id, "tags"),
		tagBody{Value: tag, Action: action}, []int{http.StatusOK}, &m, nil); err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	return &m, nil
}
