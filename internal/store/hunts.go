package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// HuntRun is the record of a hunt's last run.
type HuntRun struct {
	HuntID  string    `json:"huntId"`
	RunAt   time.Time `json:"runAt"`
	Status  string    `json:"status"` // e.g. "succeeded", "failed"
	Rows    int       `json:"rows"`
	NewRows int       `json:"newRows"`
	Error   string    `json:"error,omitempty"`
}

// Finding is a stored finding fingerprint.
type Finding struct {
	HuntID      string    `json:"huntId"`
	Fingerprint string    `json:"fingerprint"`
	FirstSeen   time.Time `json:"firstSeen"`
}

// HuntState keeps, per hunt, the last run (table "hunts", partition "run",
// row EscapeKey(huntID)) and the fingerprints of rows already reported
// (table "findings", partition EscapeKey(huntID), row fingerprint), so a
// scheduled hunt reports each finding once.
type HuntState struct {
	b Backend
}

// NewHuntState returns the hunt-state helper on b.
//
//	hs := store.NewHuntState(b)
func NewHuntState(b Backend) *HuntState { return &HuntState{b: b} }

const huntRunPartition = "run"

// LastRun returns the hunt's last recorded run; ok is false when it never
// ran.
//
//	last, ok, err := hs.LastRun(ctx, "hunt-encoded-powershell")
func (h *HuntState) LastRun(ctx context.Context, huntID string) (HuntRun, bool, error) {
	if huntID == "" {
		return HuntRun{}, false, errors.New("getting hunt run: empty hunt id")
	}
	var r HuntRun
	_, err := GetJSON(ctx, h.b, TableHunts, huntRunPartition, EscapeKey(huntID), &r)
	if errors.Is(err, ErrNotFound) {
		return HuntRun{}, false, nil
	}
	if err != nil {
		return HuntRun{}, false, fmt.Errorf("getting last run of hunt %s: %w", huntID, err)
	}
	return r, true, nil
}

// RecordRun stores run as the hunt's last run.
//
//	err := hs.RecordRun(ctx, store.HuntRun{HuntID: id, RunAt: now, Status: "succeeded", Rows: 12, NewRows: 2})
func (h *HuntState) RecordRun(ctx context.Context, run HuntRun) error {
	if run.HuntID == "" {
		return errors.New("recording hunt run: empty hunt id")
	}
	run.RunAt = run.RunAt.UTC()
	if _, err := UpsertJSON(ctx, h.b, TableHunts, huntRunPartition, EscapeKey(run.HuntID), run); err != nil {
		return fmt.Errorf("recording run of hunt %s: %w", run.HuntID, err)
	}
	return nil
}

// MarkFinding records a finding's fingerprint for the hunt; isNew is true
// only the first time (insert-if-absent), so two overlapping runs cannot
// both report it.
//
//	isNew, err := hs.MarkFinding(ctx, huntID, store.FindingFingerprint(row), now)
func (h *HuntState) MarkFinding(ctx context.Context, huntID, fingerprint string, at time.Time) (bool, error) {
	if huntID == "" || fingerprint == "" {
		return false, errors.New("marking finding: empty hunt id or fingerprint")
	}
	f := Finding{HuntID: huntID, Fingerprint: fingerprint, FirstSeen: at.UTC()}
	_, err := PutJSON(ctx, h.b, TableFindings, EscapeKey(huntID), EscapeKey(fingerprint), f, "")
	if errors.Is(err, ErrExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("marking finding %s of hunt %s: %w", fingerprint, huntID, err)
	}
	return true, nil
}

// PruneFindings deletes the hunt's fingerprints first seen before cutoff
// (so a finding that comes back after the retention is reported again) and
// returns how many it deleted.
//
//	n, err := hs.PruneFindings(ctx, huntID, now.AddDate(0, 0, -30))
func (h *HuntState) PruneFindings(ctx context.Context, huntID string, cutoff time.Time) (int, error) {
	if huntID == "" {
		return 0, errors.New("pruning findings: empty hunt id")
	}
	ents, err := h.b.List(ctx, TableFindings, EscapeKey(huntID))
	if err != nil {
		return 0, fmt.Errorf("pruning findings of hunt %s: %w", huntID, err)
	}
	n := 0
	for _, e := range ents {
		var f Finding
		if err := json.Unmarshal(e.Data, &f); err != nil {
			return n, fmt.Errorf("pruning findings of hunt %s: decoding %s: %w", huntID, e.RowKey, err)
		}
		if !f.FirstSeen.Before(cutoff) {
			continue
		}
		err := h.b.Delete(ctx, TableFindings, e.PartitionKey, e.RowKey, e.ETag)
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
			continue // pruned or re-marked concurrently
		}
		if err != nil {
			return n, fmt.Errorf("pruning findings of hunt %s: %w", huntID, err)
		}
		n++
	}
	return n, nil
}

// FindingFingerprint is a stable hash of a result row: of the given columns
// only, or of every column when none are given. Column order does not
// matter; a missing column counts as absent, not as "".
//
//	fp := store.FindingFingerprint(row, "DeviceId", "SHA256")
func FindingFingerprint(row map[string]string, columns ...string) string {
	if len(columns) == 0 {
		columns = make([]string, 0, len(row))
		for k := range row {
			columns = append(columns, k)
		}
	} else {
		columns = append([]string(nil), columns...)
	}
	sort.Strings(columns)
	h := sha256.New()
	for _, c := range columns {
		v, ok := row[c]
		// Length-prefixed so ("ab","c") and ("a","bc") differ.
		fmt.Fprintf(h, "%d:%s", len(c), c)
		if ok {
			fmt.Fprintf(h, "=%d:%s;", len(v), v)
		} else {
			h.Write([]byte("!;"))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
