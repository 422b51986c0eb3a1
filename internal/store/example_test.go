package store_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdeflow/mdeflow/internal/store"
)

func ExampleClaims_Claim() {
	ctx := context.Background()
	claims := store.NewClaims(store.NewMemory())

	won, _, _ := claims.Claim(ctx, "alert", "da638123", "message-1", nil)
	fmt.Println("first invocation won:", won)

	won, rec, _ := claims.Claim(ctx, "alert", "da638123", "message-2", nil)
	fmt.Println("second invocation won:", won, "- held by", rec.Owner)

	won, _, _ = claims.Claim(ctx, "alert", "da638123", "message-1", nil)
	fmt.Println("redelivered message-1 won:", won)
	// Output:
	// first invocation won: true
	// second invocation won: false - held by message-1
	// redelivered message-1 won: true
}

func ExampleCheckpoints() {
	ctx := context.Background()
	cps := store.NewCheckpoints(store.NewMemory())

	since, etag, _ := cps.GetCheckpoint(ctx, "alerts-poll")
	fmt.Println("never set:", since.IsZero())

	newest := time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)
	_ = cps.AdvanceCheckpoint(ctx, "alerts-poll", newest, etag)

	// A second poller that read the same (empty) checkpoint loses.
	err := cps.AdvanceCheckpoint(ctx, "alerts-poll", newest.Add(time.Minute), etag)
	fmt.Println("racing poller conflicts:", errors.Is(err, store.ErrConflict))

	since, _, _ = cps.GetCheckpoint(ctx, "alerts-poll")
	fmt.Println("checkpoint:", since.Format(time.RFC3339))
	// Output:
	// never set: true
	// racing poller conflicts: true
	// checkpoint: 2025-01-15T10:05:00Z
}

func ExampleModify() {
	ctx := context.Background()
	b := store.NewMemory()
	type breaker struct {
		Isolations int  `json:"isolations"`
		Open       bool `json:"open"`
	}
	for range 3 {
		st, _ := store.Modify(ctx, b, "breaker", "global", "2025-01-15", func(st *breaker, _ bool) error {
			if st.Open {
				return store.ErrNoChange
			}
			st.Isolations++
			st.Open = st.Isolations >= 2
			return nil
		})
		fmt.Printf("%+v\n", st)
	}
	// Output:
	// {Isolations:1 Open:false}
	// {Isolations:2 Open:true}
	// {Isolations:2 Open:true}
}

func ExampleEscapeKey() {
	fmt.Println(store.EscapeKey("contoso/hunts#1"))
	s, _ := store.UnescapeKey("contoso~2Fhunts~231")
	fmt.Println(s)
	// Output:
	// contoso~2Fhunts~231
	// contoso/hunts#1
}
