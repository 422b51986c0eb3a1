// Package fntest has hand-written fakes for the functions' unit tests. The
// end-to-end tests use the real simulator (internal/sim) instead.
package fntest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// Defender is an in-memory fake of the Defender calls the functions make.
// It mimics the API's behaviour that matters to them: 404 for unknown ids,
// ActiveRequestAlreadyExists for a second isolation while one is pending.
type Defender struct {
	mu       sync.Mutex
	Alerts   map[string]*mde.Alert
	Machines map[string]*mde.Machine
	ActionsL []mde.MachineAction
	// Calls counts calls by operation name.
	Calls map[string]int
	// Fail makes the named operation return this error once per entry.
	Fail map[string][]error
	Now  func() time.Time
	// AutoSucceed makes new machine actions final (Succeeded) at once, as
	// if Defender had finished them between two calls.
	AutoSucceed bool
}

// NewDefender returns an empty fake.
func NewDefender() *Defender {
	return &Defender{Alerts: map[string]*mde.Alert{}, Machines: map[string]*mde.Machine{},
		Calls: map[string]int{}, Fail: map[string][]error{}, Now: time.Now}
}

func (d *Defender) call(op string) error {
	d.Calls[op]++
	if errs := d.Fail[op]; len(errs) > 0 {
		d.Fail[op] = errs[1:]
		return errs[0]
	}
	return nil
}

// Count returns how often op was called.
func (d *Defender) Count(op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Calls[op]
}

func notFound(what, id string) error {
	return &mde.Error{StatusCode: 404, Code: mde.CodeResourceNotFound, Message: fmt.Sprintf("%s %s was not found", what, id)}
}

// GetAlert implements the function interfaces.
func (d *Defender) GetAlert(_ context.Context, id string, _ bool) (*mde.Alert, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("GetAlert"); err != nil {
		return nil, err
	}
	a, ok := d.Alerts[id]
	if !ok {
		return nil, notFound("Alert", id)
	}
	c := *a
	return &c, nil
}

// GetMachine implements the function interfaces.
func (d *Defender) GetMachine(_ context.Context, id string) (*mde.Machine, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("GetMachine"); err != nil {
		return nil, err
	}
	m, ok := d.Machines[id]
	if !ok {
		return nil, notFound("Machine", id)
	}
	c := *m
	return &c, nil
}

// FindMachineByName implements the function interfaces.
func (d *Defender) FindMachineByName(_ context.Context, name string) (*mde.Machine, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var found []*mde.Machine
	for _, m := range d.Machines {
		if m.ComputerDNSName == name {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		return nil, &mde.MachineLookupError{Name: name, Count: len(found)}
	}
	c := *found[0]
	return &c, nil
}

// ListMachineActions implements the function interfaces.
func (d *Defender) ListMachineActions(_ context.Context, o *mde.ListMachineActionsOptions) ([]mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("ListMachineActions"); err != nil {
		return nil, err
	}
	var out []mde.MachineAction
	for _, a := range d.ActionsL {
		if o != nil && o.MachineID != "" && a.MachineID != o.MachineID {
			continue
		}
		if o != nil && o.Type != "" && a.Type != o.Type {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

func (d *Defender) newAction(typ, machineID, comment string) (*mde.MachineAction, error) {
	if _, ok := d.Machines[machineID]; !ok {
		return nil, notFound("Machine", machineID)
	}
	for _, a := range d.ActionsL {
		if a.MachineID == machineID && a.Type == typ && !mde.IsFinalActionStatus(a.Status) {
			return nil, &mde.Error{StatusCode: 400, Code: mde.CodeActiveRequestAlreadyExists, Message: "Action is already in progress"}
		}
	}
	now := d.Now().UTC()
	status := mde.ActionPending
	if d.AutoSucceed {
		status = mde.ActionSucceeded
	}
	a := mde.MachineAction{ID: uuid.NewString(), Type: typ, Status: status, MachineID: machineID,
		RequestorComment: comment, CreationDateTimeUtc: &now, LastUpdateDateTimeUtc: &now}
	d.ActionsL = append(d.ActionsL, a)
	return &a, nil
}

// IsolateMachine implements the function interfaces.
func (d *Defender) IsolateMachine(_ context.Context, id, comment, _ string) (*mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("IsolateMachine"); err != nil {
		return nil, err
	}
	return d.newAction(mde.ActionTypeIsolate, id, comment)
}

// UnisolateMachine implements the function interfaces.
func (d *Defender) UnisolateMachine(_ context.Context, id, comment string) (*mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("UnisolateMachine"); err != nil {
		return nil, err
	}
	return d.newAction(mde.ActionTypeUnisolate, id, comment)
}

// RestrictCodeExecution implements the function interfaces.
func (d *Defender) RestrictCodeExecution(_ context.Context, id, comment string) (*mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("RestrictCodeExecution"); err != nil {
		return nil, err
	}
	return d.newAction(mde.ActionTypeRestrictCodeExecution, id, comment)
}

// RunAntiVirusScan implements the function interfaces.
func (d *Defender) RunAntiVirusScan(_ context.Context, id, comment, _ string) (*mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("RunAntiVirusScan"); err != nil {
		return nil, err
	}
	return d.newAction(mde.ActionTypeRunAntiVirusScan, id, comment)
}

// CollectInvestigationPackage implements the function interfaces.
func (d *Defender) CollectInvestigationPackage(_ context.Context, id, comment string) (*mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("CollectInvestigationPackage"); err != nil {
		return nil, err
	}
	return d.newAction(mde.ActionTypeCollectInvestigationPackage, id, comment)
}

// AddMachineTag implements the function interfaces.
func (d *Defender) AddMachineTag(_ context.Context, id, tag string) (*mde.Machine, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("AddMachineTag"); err != nil {
		return nil, err
	}
	m, ok := d.Machines[id]
	if !ok {
		return nil, notFound("Machine", id)
	}
	m.MachineTags = append(m.MachineTags, tag)
	c := *m
	return &c, nil
}

// UpdateAlert implements the function interfaces.
func (d *Defender) UpdateAlert(_ context.Context, id string, u mde.AlertUpdate) (*mde.Alert, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("UpdateAlert"); err != nil {
		return nil, err
	}
	a, ok := d.Alerts[id]
	if !ok {
		return nil, notFound("Alert", id)
	}
	if u.Status != "" {
		a.Status = u.Status
	}
	c := *a
	return &c, nil
}

// GetMachineAction implements the function interfaces.
func (d *Defender) GetMachineAction(_ context.Context, id string) (*mde.MachineAction, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("GetMachineAction"); err != nil {
		return nil, err
	}
	for i := range d.ActionsL {
		if d.ActionsL[i].ID == id {
			c := d.ActionsL[i]
			return &c, nil
		}
	}
	return nil, notFound("MachineAction", id)
}

// SetActionStatus moves an action on (tests drive progress explicitly).
func (d *Defender) SetActionStatus(id, status string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.ActionsL {
		if d.ActionsL[i].ID == id {
			d.ActionsL[i].Status = status
		}
	}
}

// AddMachine registers a machine.
func (d *Defender) AddMachine(m mde.Machine) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Machines[m.ID] = &m
}

// AddAlert registers an alert.
func (d *Defender) AddAlert(a mde.Alert) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Alerts[a.ID] = &a
}
