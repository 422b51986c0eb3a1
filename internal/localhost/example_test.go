package localhost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A typical test: start the app folder's handler, feed a queue, wait until
// everything settled, look at the dead-letter queue.
func ExampleHost() {
	root, err := os.MkdirTemp("", "example-app-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)
	exe, _ := json.Marshal(handlerBin)
	files := map[string]string{
		"host.json":          `{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": ` + string(exe) + `}}}`,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}
	for name, content := range files {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755)
		_ = os.WriteFile(filepath.Join(root, name), []byte(content), 0o644)
	}

	h, err := New(Options{AppRoot: root, Settings: map[string]string{"ServiceBusConnection": "Endpoint=sb://local/"}})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = h.Stop(ctx) }()

	_ = h.Enqueue("work", Message{MessageID: "alert-1", Body: []byte("ok")})
	_ = h.Enqueue("work", Message{MessageID: "alert-1", Body: []byte("ok")}) // duplicate: dropped
	_ = h.Enqueue("work", Message{MessageID: "poison", Body: []byte("fail")})
	if err := h.WaitIdle(ctx); err != nil {
		panic(err)
	}
	for _, d := range h.DeadLetters("work") {
		fmt.Println(d.MessageID, d.DeadLetterReason, d.DeliveryCount)
	}
	for _, q := range h.Stats().Queues {
		fmt.Printf("%s: completed %d, duplicates %d\n", q.Name, q.Completed, q.Duplicates)
	}
	// Output:
	// poison MaxDeliveryCountExceeded 10
	// done: completed 0, duplicates 0
	// work: completed 1, duplicates 1
}
