package queue

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// DefaultConnectionName is the app setting the Functions host uses when a
// Service Bus binding names no connection.
const DefaultConnectionName = "AzureWebJobsServiceBus"

// ServiceBusConfig says how to reach a Service Bus namespace: a connection
// string, or a namespace host name with a credential.
type ServiceBusConfig struct {
	ConnectionString string
	// FullyQualifiedNamespace is <namespace>.servicebus.windows.net.
	FullyQualifiedNamespace string
	Credential              azcore.TokenCredential
	// ClientOptions are passed to the SDK; nil means defaults.
	ClientOptions *azservicebus.ClientOptions
}

// ServiceBusConfigFromSettings reads the connection the way the Functions
// host reads a binding's "connection" (connectionName; "" means
// AzureWebJobsServiceBus):
//   - <name>: a connection string (Endpoint=sb://...;SharedAccessKeyName=...);
//   - or <name>__fullyQualifiedNamespace, with the credential chosen by
//     <name>__credential=managedidentity (+ <name>__clientId or
//     <name>__managedIdentityResourceId for a user-assigned identity), or
//     <name>__tenantId + __clientId + __clientSecret (a service principal),
//     or else DefaultAzureCredential (managed identity in Azure, the
//     developer's az login locally).
//
// The error names the settings to set; it never contains a secret.
//
//	cfg, err := queue.ServiceBusConfigFromSettings(os.Getenv, "ServiceBusConnection")
func ServiceBusConfigFromSettings(getenv func(string) string, connectionName string) (ServiceBusConfig, error) {
	name := connectionName
	if name == "" {
		name = DefaultConnectionName
	}
	if cs := strings.TrimSpace(getenv(name)); cs != "" {
		if !strings.Contains(strings.ToLower(cs), "endpoint=sb://") {
			return ServiceBusConfig{}, fmt.Errorf("app setting %s is not a Service Bus connection string (Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...)", name)
		}
		return ServiceBusConfig{ConnectionString: cs}, nil
	}
	fqns := normalizeNamespace(getenv(name + "__fullyQualifiedNamespace"))
	if fqns == "" {
		return ServiceBusConfig{}, fmt.Errorf("service bus connection %q is not configured: set app setting %s (a connection string) or %s__fullyQualifiedNamespace (identity-based)", name, name, name)
	}
	if !namespaceRE.MatchString(fqns) {
		return ServiceBusConfig{}, fmt.Errorf("app setting %s__fullyQualifiedNamespace = %q is not a host name like <namespace>.servicebus.windows.net", name, fqns)
	}
	cred, err := credentialFromSettings(getenv, name)
	if err != nil {
		return ServiceBusConfig{}, err
	}
	return ServiceBusConfig{FullyQualifiedNamespace: fqns, Credential: cred}, nil
}

var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+(:[0-9]{1,5})?$`)

// normalizeNamespace accepts "ns.servicebus.windows.net", "sb://ns.servicebus.windows.net/"
// or "https://...".
func normalizeNamespace(s string) string {
	s = strings.TrimSpace(s)
	for _, p := range []string{"sb://", "amqps://", "https://"} {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			s = s[len(p):]
		}
	}
	return strings.TrimRight(s, "/")
}

func credentialFromSettings(getenv func(string) string, name string) (azcore.TokenCredential, error) {
	kind := strings.ToLower(strings.TrimSpace(getenv(name + "__credential")))
	clientID := strings.TrimSpace(getenv(name + "__clientId"))
	resourceID := strings.TrimSpace(getenv(name + "__managedIdentityResourceId"))
	tenantID := strings.TrimSpace(getenv(name + "__tenantId"))
	secret := getenv(name + "__clientSecret")
	switch {
	case kind == "managedidentity":
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		switch {
		case clientID != "" && resourceID != "":
			return nil, fmt.Errorf("set only one of %s__clientId and %s__managedIdentityResourceId", name, name)
		case clientID != "":
			opts.ID = azidentity.ClientID(clientID)
		case resourceID != "":
			opts.ID = azidentity.ResourceID(resourceID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("creating managed identity credential for %s: %w", name, err)
		}
		return cred, nil
	case kind != "":
		return nil, fmt.Errorf("app setting %s__credential = %q: only \"managedidentity\" is supported", name, kind)
	case secret != "":
		if tenantID == "" || clientID == "" {
			return nil, fmt.Errorf("app setting %s__clientSecret needs %s__tenantId and %s__clientId", name, name, name)
		}
		cred, err := azidentity.NewClientSecretCredential(tenantID, clientID, secret, nil)
		if err != nil {
			return nil, fmt.Errorf("creating client secret credential for %s: %w", name, err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{TenantID: tenantID})
	if err != nil {
		return nil, fmt.Errorf("creating default Azure credential for %s: %w", name, err)
	}
	return cred, nil
}

// messageBatch is the part of *azservicebus.MessageBatch the sender uses.
type messageBatch interface {
	AddMessage(m *azservicebus.Message, options *azservicebus.AddMessageOptions) error
	NumMessages() int32
}

// messageSender is the part of *azservicebus.Sender the sender uses, so
// batching is testable without a namespace.
type messageSender interface {
	SendMessage(ctx context.Context, m *azservicebus.Message) error
	NewBatch(ctx context.Context) (messageBatch, error)
	SendBatch(ctx context.Context, b messageBatch) error
	Close(ctx context.Context) error
}

// sdkSender adapts *azservicebus.Sender to messageSender.
type sdkSender struct{ s *azservicebus.Sender }

func (a sdkSender) SendMessage(ctx context.Context, m *azservicebus.Message) error {
	return a.s.SendMessage(ctx, m, nil)
}

func (a sdkSender) NewBatch(ctx context.Context) (messageBatch, error) {
	return a.s.NewMessageBatch(ctx, nil)
}

func (a sdkSender) SendBatch(ctx context.Context, b messageBatch) error {
	mb, ok := b.(*azservicebus.MessageBatch)
	if !ok {
		return fmt.Errorf("sending batch: unexpected batch type %T", b)
	}
	return a.s.SendMessageBatch(ctx, mb, nil)
}

func (a sdkSender) Close(ctx context.Context) error { return a.s.Close(ctx) }

// ServiceBusSender sends to Service Bus queues with azservicebus. It keeps
// one AMQP sender per queue, opened on first use. Safe for concurrent use.
type ServiceBusSender struct {
	client      *azservicebus.Client // nil in unit tests with fake senders
	newSender   func(queue string) (messageSender, error)
	closeClient func(ctx context.Context) error

	mu      sync.Mutex
	senders map[string]messageSender
	closed  bool
}

var _ Sender = (*ServiceBusSender)(nil)

// NewServiceBusSender returns a sender for the namespace in cfg. It does
// not connect: the first Send does.
//
//	s, err := queue.NewServiceBusSender(cfg) // defer s.Close(ctx)
func NewServiceBusSender(cfg ServiceBusConfig) (*ServiceBusSender, error) {
	var (
		client *azservicebus.Client
		err    error
	)
	switch {
	case cfg.ConnectionString != "":
		client, err = azservicebus.NewClientFromConnectionString(cfg.ConnectionString, cfg.ClientOptions)
		if err != nil {
			// Never echo the connection string: it holds the key.
			return nil, fmt.Errorf("creating service bus client from connection string: %w", err)
		}
	case cfg.FullyQualifiedNamespace != "":
		if cfg.Credential == nil {
			return nil, fmt.Errorf("creating service bus client for %s: no credential", cfg.FullyQualifiedNamespace)
		}
		client, err = azservicebus.NewClient(cfg.FullyQualifiedNamespace, cfg.Credential, cfg.ClientOptions)
		if err != nil {
			return nil, fmt.Errorf("creating service bus client for %s: %w", cfg.FullyQualifiedNamespace, err)
		}
	default:
		return nil, errors.New("creating service bus client: set a connection string or a fully qualified namespace")
	}
	sb := newServiceBusSender(func(queue string) (messageSender, error) {
		s, err := client.NewSender(queue, nil)
		if err != nil {
			return nil, err
		}
		return sdkSender{s}, nil
	}, client.Close)
	sb.client = client
	return sb, nil
}

func newServiceBusSender(newSender func(string) (messageSender, error), closeClient func(context.Context) error) *ServiceBusSender {
	return &ServiceBusSender{newSender: newSender, closeClient: closeClient, senders: map[string]messageSender{}}
}

// entityNameRE is Service Bus's queue naming rule.
var entityNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,258}[A-Za-z0-9_])?$`)

func (s *ServiceBusSender) sender(queue string) (messageSender, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("service bus sender is closed")
	}
	if snd, ok := s.senders[queue]; ok {
		return snd, nil
	}
	snd, err := s.newSender(queue)
	if err != nil {
		return nil, err
	}
	s.senders[queue] = snd
	return snd, nil
}

// Send sends msgs to queue: one message with SendMessage, several in as few
// size-limited batches as fit. Every message is validated before anything
// is sent. When a later batch fails the earlier ones are already queued; a
// retry of the whole Send is safe because MessageIDs are deterministic and
// the queues use duplicate detection.
//
//	err := s.Send(ctx, queue.Isolations, queue.Message{MessageID: req.RequestID, Body: body})
func (s *ServiceBusSender) Send(ctx context.Context, queue string, msgs ...Message) error {
	if !entityNameRE.MatchString(queue) {
		return fmt.Errorf("sending to queue %q: invalid queue name", queue)
	}
	if len(msgs) == 0 {
		return nil
	}
	built := make([]*azservicebus.Message, len(msgs))
	for i, m := range msgs {
		b, err := BuildMessage(m)
		if err != nil {
			return fmt.Errorf("sending to queue %s: %w", queue, err)
		}
		built[i] = b
	}
	snd, err := s.sender(queue)
	if err != nil {
		return fmt.Errorf("sending to queue %s: %w", queue, err)
	}
	if len(built) == 1 {
		if err := snd.SendMessage(ctx, built[0]); err != nil {
			return fmt.Errorf("sending message %s to queue %s: %w", msgs[0].MessageID, queue, err)
		}
		return nil
	}
	if err := sendBatches(ctx, snd, built); err != nil {
		return fmt.Errorf("sending %d messages to queue %s: %w", len(built), queue, err)
	}
	return nil
}

// sendBatches packs msgs into batches in order, sending a batch when the
// next message does not fit.
func sendBatches(ctx context.Context, snd messageSender, msgs []*azservicebus.Message) error {
	batch, err := snd.NewBatch(ctx)
	if err != nil {
		return fmt.Errorf("creating batch: %w", err)
	}
	for i := 0; i < len(msgs); {
		err := batch.AddMessage(msgs[i], nil)
		switch {
		case err == nil:
			i++
			continue
		case !errors.Is(err, azservicebus.ErrMessageTooLarge):
			return fmt.Errorf("adding message %s to batch: %w", *msgs[i].MessageID, err)
		case batch.NumMessages() == 0:
			return fmt.Errorf("message %s alone exceeds the batch size limit: %w", *msgs[i].MessageID, err)
		}
		if err := snd.SendBatch(ctx, batch); err != nil {
			return fmt.Errorf("sending batch of %d: %w", batch.NumMessages(), err)
		}
		if batch, err = snd.NewBatch(ctx); err != nil {
			return fmt.Errorf("creating batch: %w", err)
		}
	}
	if batch.NumMessages() > 0 {
		if err := snd.SendBatch(ctx, batch); err != nil {
			return fmt.Errorf("sending batch of %d: %w", batch.NumMessages(), err)
		}
	}
	return nil
}

// Close closes every queue sender, then the client. Later Sends fail.
func (s *ServiceBusSender) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	senders := s.senders
	s.senders = nil
	s.mu.Unlock()
	var errs []error
	for q, snd := range senders {
		if err := snd.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing sender for queue %s: %w", q, err))
		}
	}
	if s.closeClient != nil {
		if err := s.closeClient(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing service bus client: %w", err))
		}
	}
	return errors.Join(errs...)
}
