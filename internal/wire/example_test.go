package wire_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/mdeflow/mdeflow/internal/wire"
)

// The handler binary's wiring: register functions, listen where the host
// says, serve until the process is told to stop.
func ExampleServer() {
	run := func(ctx context.Context, getenv func(string) string) error {
		addr, err := wire.ListenAddr(getenv)
		if err != nil {
			return err
		}
		s := wire.NewServer(&wire.ServerOptions{
			Logger:            slog.New(slog.NewJSONHandler(os.Stdout, nil)),
			InvocationTimeout: 4 * time.Minute, // below functionTimeout (5 min)
		})
		s.Handle("IsolateMachine", func(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
			msg, err := inv.ServiceBus("msg")
			if err != nil {
				return wire.Result{}, err // 500: the message is abandoned and redelivered
			}
			inv.Logger.Info("isolation request", "message_id", msg.MessageID, "delivery_count", msg.DeliveryCount)
			return wire.Result{}, nil
		})
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		return s.Serve(ctx, l)
	}
	_ = func() error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return run(ctx, os.Getenv)
	}
}

// Function code can be tested without HTTP: build the request as the host
// would and decode it as the server does.
func ExampleNewInvocation() {
	req, err := wire.ServiceBusPayload("msg", wire.ServiceBusMessage{
		Body:                  []byte(`{"orderId":42,"sku":"A-1"}`),
		MessageID:             "order-42",
		DeliveryCount:         1,
		ApplicationProperties: map[string]any{"tenant": "contoso"},
	}, "", wire.Sys{MethodName: "ProcessOrder", UtcNow: time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(req.Data["msg"]))
	fmt.Println(string(req.Metadata["orderId"]), string(req.Metadata["DeliveryCount"]))

	inv := wire.NewInvocation("ProcessOrder", "inv-1", req, nil)
	msg, err := inv.ServiceBus("msg")
	if err != nil {
		panic(err)
	}
	fmt.Println(string(msg.Body), msg.MessageID, msg.DeliveryCount, msg.ApplicationProperties["tenant"], msg.EnqueuedTime.Format(time.RFC3339))
	// Output:
	// "\"{\\\"orderId\\\":42,\\\"sku\\\":\\\"A-1\\\"}\""
	// "\"42\"" "1"
	// {"orderId":42,"sku":"A-1"} order-42 1 contoso 2025-01-15T10:05:00Z
}

// An HTTP-triggered function answers through its http output binding with
// a 200 envelope, whatever status the caller should see.
func ExampleJSONHTTPResponse() {
	res := wire.JSONHTTPResponse("res", 202, map[string]string{"state": "queued"})
	fmt.Printf("%+v\n", res.Outputs["res"])
	// Output:
	// {StatusCode:202 Headers:map[Content-Type:application/json; charset=utf-8] Body:{"state":"queued"}}
}
