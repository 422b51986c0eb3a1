package mde_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mdeflow/mdeflow/internal/auth"
	"github.com/mdeflow/mdeflow/internal/mde"
)

// Wiring as main does it: cloud profile, credential, shared quota limiter,
// client; then one isolation with the error classes a function handles.
func Example() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	mde.RouteAzcoreLog(logger)

	profile, err := auth.ProfileByName("commercial", "eu")
	if err != nil {
		panic(err)
	}
	cred, err := auth.NewCredential(auth.CredentialConfig{
		Kind: auth.KindSecret, TenantID: os.Getenv("MDE_TENANT_ID"), ClientID: os.Getenv("MDE_CLIENT_ID"),
		ClientSecret: os.Getenv("MDE_CLIENT_SECRET"), AuthorityHost: profile.AuthorityHost,
	})
	if err != nil {
		panic(err)
	}
	limiter, err := mde.NewLimiter(mde.LimitsConfig{Instances: 2}) // two Function App instances share the quota
	if err != nil {
		panic(err)
	}
	client, err := mde.NewClient(cred, &mde.ClientOptions{
		BaseURL: profile.MDEBaseURL, Scope: profile.MDEScope, Limiter: limiter, Logger: logger,
	})
	if err != nil {
		panic(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	action, err := client.IsolateMachine(ctx, "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c", "isolated by mdeflow", mde.IsolationFull)
	switch {
	case err == nil:
		fmt.Println("isolation requested:", action.ID, action.Status)
	case errors.Is(err, mde.ErrActiveRequestAlreadyExists):
		// Not a failure: find the pending action with ListMachineActions and follow it.
	case errors.Is(err, mde.ErrOsPlatformNotSupported), errors.Is(err, mde.ErrInvalidArgument):
		// Permanent: record and dead-letter with the reason.
	case mde.IsTransient(err):
		// Throttled, 5xx, network, deadline: answer non-2xx so Service Bus redelivers.
	default:
		// Permanent (401/403/404/400 ...).
	}
}
