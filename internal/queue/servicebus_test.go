package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

const fakeKey = "c2VjcmV0LWtleS12YWx1ZQ=="

func settings(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestServiceBusConfigFromSettings(t *testing.T) {
	t.Parallel()
	cs := "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + fakeKey
	tests := []struct {
		name     string
		env      map[string]string
		conn     string
		wantCS   string
		wantFQNS string
		wantCred any
		wantErr  string
	}{
		{name: "connection string", env: map[string]string{"ServiceBusConnection": cs}, conn: "ServiceBusConnection", wantCS: cs},
		{name: "default setting name", env: map[string]string{"AzureWebJobsServiceBus": cs}, wantCS: cs},
		{name: "connection string wins over namespace", env: map[string]string{"SB": cs, "SB__fullyQualifiedNamespace": "other.servicebus.windows.net"}, conn: "SB", wantCS: cs},
		{
			name: "managed identity, system-assigned",
			env:  map[string]string{"SB__fullyQualifiedNamespace": "contoso.servicebus.windows.net", "SB__credential": "managedidentity"},
			conn: "SB", wantFQNS: "contoso.servicebus.windows.net", wantCred: &azidentity.ManagedIdentityCredential{},
		},
		{
			name: "managed identity, user-assigned, namespace as URL",
			env:  map[string]string{"SB__fullyQualifiedNamespace": " sb://contoso.servicebus.windows.net/ ", "SB__credential": "ManagedIdentity", "SB__clientId": "00000000-0000-0000-0000-000000000001"},
			conn: "SB", wantFQNS: "contoso.servicebus.windows.net", wantCred: &azidentity.ManagedIdentityCredential{},
		},
		{
			name: "service principal",
			env:  map[string]string{"SB__fullyQualifiedNamespace": "contoso.servicebus.windows.net", "SB__tenantId": "t", "SB__clientId": "c", "SB__clientSecret": "s3cr3t"},
			conn: "SB", wantFQNS: "contoso.servicebus.windows.net", wantCred: &azidentity.ClientSecretCredential{},
		},
		{
			name: "default credential",
			env:  map[string]string{"SB__fullyQualifiedNamespace": "contoso.servicebus.windows.net"},
			conn: "SB", wantFQNS: "contoso.servicebus.windows.net", wantCred: &azidentity.DefaultAzureCredential{},
		},
		{name: "nothing set names both settings", env: map[string]string{}, conn: "ServiceBusConnection",
			wantErr: "set app setting ServiceBusConnection (a connection string) or ServiceBusConnection__fullyQualifiedNamespace"},
		{name: "nothing set, default name", env: map[string]string{}, wantErr: "AzureWebJobsServiceBus__fullyQualifiedNamespace"},
		{name: "not a connection string", env: map[string]string{"SB": "SharedAccessKey=" + fakeKey}, conn: "SB", wantErr: "app setting SB is not a Service Bus connection string"},
		{name: "bad namespace", env: map[string]string{"SB__fullyQualifiedNamespace": "not a host/x"}, conn: "SB", wantErr: "is not a host name"},
		{name: "unknown credential kind", env: map[string]string{"SB__fullyQualifiedNamespace": "contoso.servicebus.windows.net", "SB__credential": "certificate"}, conn: "SB", wantErr: `only "managedidentity"`},
		{name: "secret without tenant", env: map[string]string{"SB__fullyQualifiedNamespace": "contoso.servicebus.windows.net", "SB__clientSecret": "s3cr3t", "SB__clientId": "c"}, conn: "SB", wantErr: "needs SB__tenantId"},
		{name: "two user-assigned ids", env: map[string]string{"SB__fullyQualifiedNamespace": "contoso.servicebus.windows.net", "SB__credential": "managedidentity", "SB__clientId": "c", "SB__managedIdentityResourceId": "/subscriptions/x"}, conn: "SB", wantErr: "only one of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ServiceBusConfigFromSettings(settings(tc.env), tc.conn)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), fakeKey) || strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("error leaks a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ConnectionString != tc.wantCS || cfg.FullyQualifiedNamespace != tc.wantFQNS {
				t.Fatalf("cfg = cs %q fqns %q", cfg.ConnectionString, cfg.FullyQualifiedNamespace)
			}
			if tc.wantCred == nil {
				if cfg.Credential != nil {
					t.Fatalf("credential %T with a connection string", cfg.Credential)
				}
				return
			}
			if fmt.Sprintf("%T", cfg.Credential) != fmt.Sprintf("%T", tc.wantCred) {
				t.Fatalf("credential %T, want %T", cfg.Credential, tc.wantCred)
			}
		})
	}
}

func TestNewServiceBusSender(t *testing.T) {
	t.Parallel()
	s, err := NewServiceBusSender(ServiceBusConfig{ConnectionString: "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + fakeKey})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing was opened, so closing needs no network.
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), "alerts", Message{MessageID: "m"})
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Send after Close = %v", err)
	}
	for _, cfg := range []ServiceBusConfig{{}, {FullyQualifiedNamespace: "contoso.servicebus.windows.net"}} {
		if _, err := NewServiceBusSender(cfg); err == nil {
			t.Errorf("NewServiceBusSender(%+v) accepted", cfg)
		}
	}
	_, err = NewServiceBusSender(ServiceBusConfig{ConnectionString: "SharedAccessKey=" + fakeKey})
	if err == nil || strings.Contains(err.Error(), fakeKey) {
		t.Fatalf("malformed connection string: %v", err)
	}
}

// fakeBatch holds messages up to a byte budget, like MessageBatch.
type fakeBatch struct {
	max  int
	size int
	msgs []*azservicebus.Message
}

func (b *fakeBatch) AddMessage(m *azservicebus.Message, _ *azservicebus.AddMessageOptions) error {
	if b.size+len(m.Body) > b.max {
		return azservicebus.ErrMessageTooLarge
	}
	b.size += len(m.Body)
	b.msgs = append(b.msgs, m)
	return nil
}

func (b *fakeBatch) NumMessages() int32 { return int32(len(b.msgs)) }

type fakeSender struct {
	mu        sync.Mutex
	maxBatch  int
	single    []string
	batches   [][]string
	failBatch int // fail the n-th SendBatch (1-based); 0 never
	newErr    error
	closed    bool
}

func (f *fakeSender) SendMessage(_ context.Context, m *azservicebus.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.single = append(f.single, *m.MessageID)
	return nil
}

func (f *fakeSender) NewBatch(context.Context) (messageBatch, error) {
	if f.newErr != nil {
		return nil, f.newErr
	}
	return &fakeBatch{max: f.maxBatch}, nil
}

func (f *fakeSender) SendBatch(_ context.Context, b messageBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failBatch == len(f.batches)+1 {
		return errors.New("link detached")
	}
	var ids []string
	for _, m := range b.(*fakeBatch).msgs {
		ids = append(ids, *m.MessageID)
	}
	f.batches = append(f.batches, ids)
	return nil
}

func (f *fakeSender) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func msgs(sizes ...int) []Message {
	out := make([]Message, len(sizes))
	for i, n := range sizes {
		out[i] = Message{MessageID: fmt.Sprintf("m%d", i), Body: []byte(strings.Repeat("x", n))}
	}
	return out
}

func TestServiceBusSenderBatching(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		maxBatch    int
		failBatch   int
		in          []Message
		wantSingle  []string
		wantBatches [][]string
		wantErr     string
	}{
		{name: "one message is sent alone", maxBatch: 100, in: msgs(10), wantSingle: []string{"m0"}},
		{name: "several fit one batch", maxBatch: 100, in: msgs(10, 20, 30), wantBatches: [][]string{{"m0", "m1", "m2"}}},
		{name: "split in order at the size limit", maxBatch: 50, in: msgs(20, 20, 20, 40, 10),
			wantBatches: [][]string{{"m0", "m1"}, {"m2"}, {"m3", "m4"}}},
		// The limit is only known from the batch, so what came before is sent.
		{name: "a message larger than a batch", maxBatch: 50, in: msgs(20, 60),
			wantBatches: [][]string{{"m0"}}, wantErr: "m1 alone exceeds the batch size limit"},
		{name: "second batch fails", maxBatch: 30, failBatch: 2, in: msgs(20, 20, 20),
			wantBatches: [][]string{{"m0"}}, wantErr: "link detached"},
		{name: "invalid message: nothing sent", maxBatch: 100, in: append(msgs(1, 1), Message{Body: []byte("x")}), wantErr: "no MessageID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := &fakeSender{maxBatch: tc.maxBatch, failBatch: tc.failBatch}
			s := newServiceBusSender(func(string) (messageSender, error) { return fs, nil }, nil)
			err := s.Send(t.Context(), "isolations", tc.in...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Send error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(fs.single) != fmt.Sprint(tc.wantSingle) || fmt.Sprint(fs.batches) != fmt.Sprint(tc.wantBatches) {
				t.Fatalf("sent single %v batches %v, want %v %v", fs.single, fs.batches, tc.wantSingle, tc.wantBatches)
			}
		})
	}
}

func TestServiceBusSenderCachesAndCloses(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		created = map[string]*fakeSender{}
		calls   int
	)
	clientClosed := false
	s := newServiceBusSender(func(q string) (messageSender, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if q == "broken" {
			return nil, errors.New("no such entity")
		}
		fs := &fakeSender{maxBatch: 1000}
		created[q] = fs
		return fs, nil
	}, func(context.Context) error { clientClosed = true; return nil })

	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			q := []string{"alerts", "isolations"}[i%2]
			if err := s.Send(t.Context(), q, Message{MessageID: fmt.Sprintf("m%d", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if calls != 2 || len(created["alerts"].single) != 10 || len(created["isolations"].single) != 10 {
		t.Fatalf("senders created %d times; alerts %d isolations %d messages", calls, len(created["alerts"].single), len(created["isolations"].single))
	}
	if err := s.Send(t.Context(), "broken", Message{MessageID: "m"}); err == nil || !strings.Contains(err.Error(), "no such entity") {
		t.Fatalf("Send to a queue whose sender fails = %v", err)
	}
	for _, bad := range []string{"", "-x", "has space", strings.Repeat("q", 261)} {
		if err := s.Send(t.Context(), bad, Message{MessageID: "m"}); err == nil {
			t.Errorf("queue name %q accepted", bad)
		}
	}
	if err := s.Send(t.Context(), "alerts"); err != nil {
		t.Fatalf("Send of nothing = %v", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !created["alerts"].closed || !created["isolations"].closed || !clientClosed {
		t.Fatal("Close did not close every sender and the client")
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}
