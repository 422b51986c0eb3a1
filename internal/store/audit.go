package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// AuditEntry is one line of the action audit: a decision, an action taken
// or skipped, an approval. Kind values are the pipeline's (Action: the
// pipeline.Action* types or "decision"; Outcome: pipeline.Outcome*).
type AuditEntry struct {
	// ID is set by Record: time-ordered and unique (the row key).
	ID string `json:"id"`
	// Key, when set, makes Record idempotent: the same Key and At give the
	// same row, so a redelivered message records its outcome once.
	Key       string    `json:"key,omitempty"`
	At        time.Time `json:"at"`
	AlertID   string    `json:"alertId,omitempty"`
	MachineID string    `json:"machineId,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
	Action    string    `json:"action"`
	Outcome   string    `json:"outcome,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	// Actor is the function or the person (requestor, approver).
	Actor  string `json:"actor,omitempty"`
	DryRun bool   `json:"dryRun,omitempty"`
	// Detail is any JSON document (the pipeline.Decision, the Outcome...).
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Audit records the action audit in table "audit": partition = the
// machine id (or the alert id when there is no machine, or "none"), row =
// the entry's time-ordered ID, so a machine's history is one partition.
type Audit struct {
	b Backend
	// Now is the clock for entries without At; nil means time.Now.
	Now func() time.Time
}

// NewAudit returns the audit helper on b.
//
//	audit := store.NewAudit(b)
func NewAudit(b Backend) *Audit { return &Audit{b: b} }

// auditPartition is the partition of an entry.
func auditPartition(e AuditEntry) string {
	switch {
	case e.MachineID != "":
		return EscapeKey(e.MachineID)
	case e.AlertID != "":
		return EscapeKey("alert:" + e.AlertID)
	}
	return "none"
}

// NewAuditID returns a unique ID that sorts by time: the UTC time with
// nanoseconds, then 8 random hex digits.
func NewAuditID(at time.Time) string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read does not fail
	return at.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(rnd[:])
}

// Record stores e, setting At (when zero) and ID, and returns it.
//
//	_, err := audit.Record(ctx, store.AuditEntry{AlertID: a.ID, MachineID: m.ID, Action: "isolate", Outcome: "accepted", Actor: "IsolateMachine"})
func (a *Audit) Record(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Action == "" {
		return AuditEntry{}, errors.New("recording audit entry: empty action")
	}
	if e.At.IsZero() {
		e.At = clock(a.Now)
	}
	e.At = e.At.UTC()
	pk := auditPartition(e)
	if e.Key != "" {
		sum := sha256.Sum256([]byte(e.Key))
		e.ID = e.At.Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(sum[:4])
		_, err := PutJSON(ctx, a.b, TableAudit, pk, e.ID, e, "")
		if err != nil && !errors.Is(err, ErrExists) {
			return AuditEntry{}, fmt.Errorf("recording audit entry %s for %s: %w", e.Action, pk, err)
		}
		return e, nil
	}
	for range 3 {
		e.ID = NewAuditID(e.At)
		_, err := PutJSON(ctx, a.b, TableAudit, pk, e.ID, e, "")
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, ErrExists) { // a random-suffix collision: new ID
			return AuditEntry{}, fmt.Errorf("recording audit entry %s for %s: %w", e.Action, pk, err)
		}
	}
	return AuditEntry{}, fmt.Errorf("recording audit entry %s for %s: id collisions", e.Action, pk)
}

// ListByMachine returns a machine's entries, oldest first.
//
//	entries, err := audit.ListByMachine(ctx, machineID)
func (a *Audit) ListByMachine(ctx context.Context, machineID string) ([]AuditEntry, error) {
	if machineID == "" {
		return nil, errors.New("listing audit: empty machine id")
	}
	return a.list(ctx, EscapeKey(machineID))
}

// ListByAlert returns an alert's entries, oldest first (it reads the whole
// audit table).
//
//	entries, err := audit.ListByAlert(ctx, alertID)
func (a *Audit) ListByAlert(ctx context.Context, alertID string) ([]AuditEntry, error) {
	all, err := a.ListAll(ctx)
	if err != nil {
		return nil, err
	}
	var out []AuditEntry
	for _, e := range all {
		if e.AlertID == alertID {
			out = append(out, e)
		}
	}
	return out, nil
}

// ListAll returns every entry, oldest first.
//
//	entries, err := audit.ListAll(ctx)
func (a *Audit) ListAll(ctx context.Context) ([]AuditEntry, error) {
	return a.list(ctx, "")
}

func (a *Audit) list(ctx context.Context, pk string) ([]AuditEntry, error) {
	ents, err := a.b.List(ctx, TableAudit, pk)
	if err != nil {
		return nil, fmt.Errorf("listing audit: %w", err)
	}
	out := make([]AuditEntry, 0, len(ents))
	for _, en := range ents {
		var e AuditEntry
		if err := json.Unmarshal(en.Data, &e); err != nil {
			return nil, fmt.Errorf("listing audit: decoding %s/%s: %w", en.PartitionKey, en.RowKey, err)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
