package notify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// OutboxConfig configures the Outbox channel.
type OutboxConfig struct {
	// Name of the channel, default "outbox".
	Name string
	// Dir receives one <notification-id>.eml per notification. It is
	// created when missing.
	Dir string
	// From and To go into the message headers, default
	// "mdeflow@localhost" and ["soc@localhost"].
	From string
	To   []string
}

// Outbox writes each notification as an RFC 5322 .eml file into a
// directory: for local runs, air-gapped set-ups, or a mail relay that picks
// up files. The write is atomic (temporary file, fsync, then a no-clobber
// link or rename), and an existing file means "already delivered", so a
// redelivered notification is not written twice.
type Outbox struct {
	name string
	dir  string
	from string
	to   []string
}

// NewOutbox validates cfg and creates the directory.
func NewOutbox(cfg OutboxConfig) (*Outbox, error) {
	if cfg.Name == "" {
		cfg.Name = "outbox"
	}
	if cfg.From == "" {
		cfg.From = "mdeflow@localhost"
	}
	if len(cfg.To) == 0 {
		cfg.To = []string{"soc@localhost"}
	}
	var errs []error
	if err := ValidateChannelName(cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if cfg.Dir == "" {
		errs = append(errs, errors.New("outbox: no directory"))
	}
	if _, err := parseASCIIAddress(cfg.From); err != nil {
		errs = append(errs, fmt.Errorf("outbox from: %w", err))
	}
	for _, t := range cfg.To {
		if _, err := parseASCIIAddress(t); err != nil {
			errs = append(errs, fmt.Errorf("outbox to: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating outbox directory: %w", err)
	}
	return &Outbox{name: cfg.Name, dir: cfg.Dir, from: cfg.From, to: append([]string(nil), cfg.To...)}, nil
}

// Name implements Channel.
func (o *Outbox) Name() string { return o.name }

// Path returns the file a notification is written to.
func (o *Outbox) Path(notificationID string) string {
	return filepath.Join(o.dir, fileNameOf(notificationID)+".eml")
}

// Send implements Channel.
func (o *Outbox) Send(ctx context.Context, n pipeline.Notification, r Rendered) error {
	if err := ctx.Err(); err != nil {
		return Transient(err)
	}
	final := o.Path(n.ID)
	if _, err := os.Stat(final); err == nil {
		return nil // already delivered
	}
	msg, err := BuildMIME(o.from, recipientsOf(n, o.to), r, MessageID(n.ID), messageDate(n))
	if err != nil {
		return err
	}
	// Not *.eml: a process killed before the link leaves the temporary
	// file behind, and a relay (or a count) matching *.eml must not take a
	// partial message for a notification.
	tmp, err := os.CreateTemp(o.dir, ".tmp-*.part")
	if err != nil {
		return Transient(fmt.Errorf("outbox: creating temporary file: %w", err))
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op after a successful rename
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		return Transient(fmt.Errorf("outbox: writing: %w", err))
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return Transient(fmt.Errorf("outbox: syncing: %w", err))
	}
	if err := tmp.Close(); err != nil {
		return Transient(fmt.Errorf("outbox: closing: %w", err))
	}
	// os.Link fails when final exists: the first writer wins and a
	// concurrent second one sees ErrExist, which means delivered.
	if err := os.Link(tmpName, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		// File systems without hard links: fall back to rename (atomic,
		// but last writer wins; both wrote the same bytes).
		if err := os.Rename(tmpName, final); err != nil {
			return Transient(fmt.Errorf("outbox: publishing %s: %w", filepath.Base(final), err))
		}
	}
	syncDir(o.dir)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// messageDate is the Date header of a notification's e-mail: its creation
// time, so a re-send is byte-identical (now when the notification has none).
func messageDate(n pipeline.Notification) time.Time {
	if !n.CreatedAt.IsZero() {
		return n.CreatedAt
	}
	return time.Now().UTC()
}

// fileNameOf maps a notification id to a safe, injective file name: letters,
// digits, '-' and '_' are kept, everything else (including '.', '/' and
// '\\') becomes =XX, so "../x" can never leave the directory.
func fileNameOf(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	s := b.String()
	if s == "" {
		s = "=00"
	}
	if len(s) > 200 {
		// keep it injective enough: prefix plus the escaped tail's hash
		s = truncateBytes(s, 150) + "=" + shortHash(id)
	}
	return s
}
