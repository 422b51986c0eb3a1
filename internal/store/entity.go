package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
)

// ErrClosed is returned by a backend used after Close.
var ErrClosed = errors.New("store: backend closed")

func jsonValid(b []byte) bool { return json.Valid(b) }

// cloneBytes copies b, keeping nil for empty input so an empty Data reads
// back the same from every backend.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

// versionETag formats a monotonically increasing version as a weak ETag,
// the way Azure Table ETags look (W/"...").
func versionETag(v uint64) string {
	return `W/"` + strconv.FormatUint(v, 10) + `"`
}

// ctxErr returns the context's error, so local backends honour
// cancellation like the remote one.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}
