package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Grouping (see docs/notifiers/README.md, "Grouping"):
//
// A group is one row of TableGroups keyed by the notification's GroupKey.
// The first alert notification of a key inserts the row (insert-if-absent)
// as the group's lead and is sent at once. A later alert notification of
// the same key that arrives while the window is open is appended to the
// row (ETag-guarded), marked "_grouped" in TableDeliveries, and not sent.
// Once the window has closed, whoever touches the group next -- the next
// notification of that key, or FlushGroups called from a timer -- closes
// the row (no more appends), sends one digest notification
// ("N more alerts for this incident", id "digest-<lead id>", delivered with
// the same per-channel idempotency) and deletes the row. A digest that
// fails transiently leaves the closed row in place to be flushed again.
// Nothing lives in memory, so it works in stateless Functions invocations.

type groupRecord struct {
	GroupKey    string                `json:"groupKey"`
	LeadID      string                `json:"leadId"`
	OpenedAt    time.Time             `json:"openedAt"`
	ClosesAt    time.Time             `json:"closesAt"`
	Closed      bool                  `json:"closed,omitempty"`
	Channels    []string              `json:"channels"`
	Alert       *pipeline.AlertInfo   `json:"alert,omitempty"`
	Machine     *pipeline.MachineInfo `json:"machine,omitempty"`
	Folded      []foldedItem          `json:"folded,omitempty"`
	FoldedCount int                   `json:"foldedCount"`
}

type foldedItem struct {
	ID        string    `json:"id"`
	AlertID   string    `json:"alertId,omitempty"`
	Title     string    `json:"title,omitempty"`
	Severity  string    `json:"severity,omitempty"`
	Machine   string    `json:"machine,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// groupable reports whether n takes part in grouping: alert notifications
// with a group key, when a window is set. Approvals, isolation outcomes,
// breaker notices and hunts are always sent on their own.
func (d *Dispatcher) groupable(n pipeline.Notification) bool {
	return d.window > 0 && n.GroupKey != "" && n.Kind == pipeline.NotifyAlert
}

// leadAlert keeps what the digest needs of the lead alert (no evidence).
func leadAlert(a *pipeline.AlertInfo) *pipeline.AlertInfo {
	if a == nil {
		return nil
	}
	return &pipeline.AlertInfo{ID: a.ID, Title: truncateBytes(a.Title, 1024), Severity: a.Severity,
		Category: a.Category, DetectionSource: a.DetectionSource, IncidentID: a.IncidentID, CreatedAt: a.CreatedAt}
}

func foldedOf(n pipeline.Notification) foldedItem {
	f := foldedItem{ID: n.ID, CreatedAt: n.CreatedAt}
	if a := n.Alert; a != nil {
		f.AlertID, f.Title, f.Severity = a.ID, truncateBytes(a.Title, 512), a.Severity
	}
	if m := n.Machine; m != nil {
		f.Machine = truncateBytes(m.ComputerDNSName, 256)
		if f.Machine == "" {
			f.Machine = m.ID
		}
	}
	return f
}

func (g *groupRecord) has(id string) bool {
	return g.LeadID == id || slices.ContainsFunc(g.Folded, func(f foldedItem) bool { return f.ID == id })
}

// group decides whether n is folded into its group (true) or sent (false).
// An error is returned only when the store cannot be read or written.
func (d *Dispatcher) group(ctx context.Context, n pipeline.Notification, targets []string, rep *Report) (bool, error) {
	// Seen before? A "_grouped" marker means it was folded; any other row
	// means it was sent as a lead (or alone) and this is a redelivery.
	rows, err := d.store.List(ctx, TableDeliveries, store.EscapeKey(n.ID))
	if err != nil {
		return false, Transient(fmt.Errorf("reading delivery state: %w", err))
	}
	for _, r := range rows {
		if r.RowKey == foldedRowKey {
			return true, nil
		}
	}
	if len(rows) > 0 {
		return false, nil
	}

	gk := store.EscapeKey(n.GroupKey)
	for range 6 {
		now := d.clock().UTC()
		e, err := d.store.Get(ctx, TableGroups, gk, groupRowKey)
		if errors.Is(err, store.ErrNotFound) {
			rec := groupRecord{GroupKey: n.GroupKey, LeadID: n.ID, OpenedAt: now, ClosesAt: now.Add(d.window),
				Channels: slices.Clone(targets), Alert: leadAlert(n.Alert), Machine: n.Machine}
			_, err := d.store.Insert(ctx, TableGroups, d.entity(gk, groupRowKey, rec, ""))
			if errors.Is(err, store.ErrExists) {
				continue
			}
			if err != nil {
				return false, Transient(fmt.Errorf("opening group: %w", err))
			}
			return false, nil
		}
		if err != nil {
			return false, Transient(fmt.Errorf("reading group: %w", err))
		}
		var rec groupRecord
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			d.log.ErrorContext(ctx, "undecodable group record; sending on its own", logGroupKey, n.GroupKey, "error", err.Error())
			return false, nil
		}
		if rec.LeadID == n.ID {
			return false, nil // the lead, redelivered before any channel was tried
		}
		if !rec.Closed && now.Before(rec.ClosesAt) {
			if !rec.has(n.ID) {
				if len(rec.Folded) < maxFoldedStored {
					rec.Folded = append(rec.Folded, foldedOf(n))
				}
				rec.FoldedCount++
				for _, t := range targets {
					if !slices.Contains(rec.Channels, t) {
						rec.Channels = append(rec.Channels, t)
					}
				}
				_, err := d.store.Update(ctx, TableGroups, d.entity(gk, groupRowKey, rec, e.ETag))
				if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return false, Transient(fmt.Errorf("adding to group: %w", err))
				}
			}
			// Marker last: a crash before it means a redelivery appends
			// again (a no-op) rather than losing the alert.
			mark := deliveryRecord{NotificationID: n.ID, Channel: foldedRowKey, Kind: n.Kind, State: StateFolded,
				UpdatedAt: now, GroupKey: n.GroupKey, GroupLead: rec.LeadID}
			if _, err := d.store.Upsert(ctx, TableDeliveries, d.entity(store.EscapeKey(n.ID), foldedRowKey, mark, "")); err != nil {
				return false, Transient(fmt.Errorf("marking notification as grouped: %w", err))
			}
			return true, nil
		}
		// The window is over: flush the old group, then open a new one.
		digest, ferr := d.flushGroup(ctx, gk, e, rec)
		if digest != nil {
			rep.Digests = append(rep.Digests, *digest)
		}
		if errors.Is(ferr, errGroupChanged) {
			continue
		}
		if ferr != nil {
			// The digest stays pending in the store; do not hold this
			// notification back for it.
			d.log.WarnContext(ctx, "flushing group failed; sending notification on its own",
				logGroupKey, n.GroupKey, logNotificationID, n.ID, "error", ferr.Error())
			return false, nil
		}
	}
	return false, nil
}

var errGroupChanged = errors.New("group changed concurrently")

// flushGroup closes a group whose window is over, sends its digest (when
// anything was folded) and deletes it. The digest report is returned when a
// digest was attempted.
func (d *Dispatcher) flushGroup(ctx context.Context, gk string, e store.Entity, rec groupRecord) (*Report, error) {
	if !rec.Closed {
		rec.Closed = true
		ne, err := d.store.Update(ctx, TableGroups, d.entity(gk, groupRowKey, rec, e.ETag))
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return nil, errGroupChanged
		}
		if err != nil {
			return nil, Transient(fmt.Errorf("closing group: %w", err))
		}
		e = ne
	}
	var digestRep *Report
	if rec.FoldedCount > 0 {
		dn := rec.digest()
		r, err := d.deliverNow(ctx, dn, dn.Channels, Report{NotificationID: dn.ID, Kind: dn.Kind, GroupKey: dn.GroupKey})
		digestRep = &r
		if err != nil && IsTransient(err) {
			return digestRep, err
		}
		// Permanent failures are recorded per channel; retrying the
		// digest cannot help, so the group is finished.
	}
	err := d.store.Delete(ctx, TableGroups, gk, groupRowKey, e.ETag)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		return digestRep, Transient(fmt.Errorf("deleting flushed group: %w", err))
	}
	d.log.InfoContext(ctx, "group flushed", logGroupKey, rec.GroupKey, "folded", rec.FoldedCount)
	return digestRep, nil
}

// digest builds the digest notification of a closed group. Its rows use the
// HuntDigest table shape; Text carries the summary line.
func (g *groupRecord) digest() pipeline.Notification {
	rows := make([]map[string]string, 0, len(g.Folded))
	for _, f := range g.Folded {
		rows = append(rows, map[string]string{
			"Time": fmtTime(f.CreatedAt), "Severity": f.Severity, "Title": f.Title, "Machine": f.Machine, "Alert id": f.AlertID,
		})
	}
	name := "Incident"
	if g.Alert != nil && g.Alert.IncidentID != nil {
		name += " " + strconv.FormatInt(*g.Alert.IncidentID, 10)
	}
	return pipeline.Notification{
		ID:       "digest-" + g.LeadID,
		Kind:     KindGroupDigest,
		Channels: slices.Clone(g.Channels),
		Alert:    g.Alert,
		Machine:  g.Machine,
		Text: fmt.Sprintf("%d more alerts for this incident between %s and %s (group %s). The first alert was sent on its own.",
			g.FoldedCount, fmtTime(g.OpenedAt), fmtTime(g.ClosesAt), g.GroupKey),
		Hunt: &pipeline.HuntDigest{
			HuntID: g.GroupKey, Name: name + " — alerts folded into this digest", RunAt: g.ClosesAt,
			Columns: []string{"Time", "Severity", "Title", "Machine", "Alert id"},
			Rows:    rows, TotalRows: g.FoldedCount, NewRows: g.FoldedCount,
		},
		GroupKey:  g.GroupKey,
		CreatedAt: g.ClosesAt,
	}
}

// FlushGroups sends the digest of every group whose window closed before
// now (and of groups left closed by an earlier failed flush). Call it from
// a timer (for example the alert-polling timer): without it, the digest of
// a group that receives no further notification waits for the next one.
// It returns the reports of the digests it attempted.
func (d *Dispatcher) FlushGroups(ctx context.Context, now time.Time) ([]Report, error) {
	if d.window <= 0 {
		return nil, nil
	}
	ents, err := d.store.List(ctx, TableGroups, "")
	if err != nil {
		return nil, Transient(fmt.Errorf("listing groups: %w", err))
	}
	var reps []Report
	var errs []error
	for _, e := range ents {
		if e.RowKey != groupRowKey {
			continue
		}
		var rec groupRecord
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			errs = append(errs, Permanent(fmt.Errorf("decoding group %s: %w", e.PartitionKey, err)))
			continue
		}
		if !rec.Closed && now.Before(rec.ClosesAt) {
			continue
		}
		rep, err := d.flushGroup(ctx, e.PartitionKey, e, rec)
		if rep != nil {
			reps = append(reps, *rep)
		}
		if err != nil && !errors.Is(err, errGroupChanged) {
			errs = append(errs, fmt.Errorf("flushing group %s: %w", oneLine(rec.GroupKey, 128), err))
		}
	}
	return reps, errors.Join(errs...)
}
