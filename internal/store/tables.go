package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// TablesConfig configures the Azure Table Storage backend. Set either
// ConnectionString, or Endpoint with Credential.
type TablesConfig struct {
	// ConnectionString is a storage account connection string (account key
	// or SAS), e.g. the value of AzureWebJobsStorage, or Azurite's.
	ConnectionString string
	// Endpoint is the table service URL, https://<account>.table.core.windows.net,
	// used with Credential (managed identity needs the "Storage Table Data
	// Contributor" role).
	Endpoint   string
	Credential azcore.TokenCredential
	// TablePrefix is put before every table name (letters and digits,
	// starting with a letter, at most 23), so several deployments or test
	// runs can share an account.
	TablePrefix string
	// ClientOptions are passed to the SDK; nil means defaults.
	ClientOptions *aztables.ClientOptions
}

// TablesBackend stores entities in Azure Table Storage (or Azurite).
// Tables are created on first write. Entity.Data is kept as text in the
// string property "Data"; a document longer than one property allows (64
// KiB) is split over "Data0".."DataN" with "DataParts" = N+1. ETags and
// Timestamps are the service's.
type TablesBackend struct {
	svc    *aztables.ServiceClient
	prefix string
}

var _ Backend = (*TablesBackend)(nil)

var tablePrefixRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]{0,22})?$`)

// NewTables returns a backend for the account in cfg. It makes no request.
//
//	b, err := store.NewTables(store.TablesConfig{Endpoint: "https://acct.table.core.windows.net", Credential: cred})
func NewTables(cfg TablesConfig) (*TablesBackend, error) {
	if !tablePrefixRE.MatchString(cfg.TablePrefix) {
		return nil, fmt.Errorf("creating table store: table prefix %q must be a letter then at most 22 letters or digits", cfg.TablePrefix)
	}
	opts := aztables.ClientOptions{}
	if cfg.ClientOptions != nil {
		opts = *cfg.ClientOptions
	}
	opts.PerCallPolicies = append(append([]policy.Policy(nil), opts.PerCallPolicies...), asciiJSONPolicy{})
	var (
		svc *aztables.ServiceClient
		err error
	)
	switch {
	case cfg.ConnectionString != "":
		svc, err = aztables.NewServiceClientFromConnectionString(cfg.ConnectionString, &opts)
		if err != nil {
			// The SDK's message does not echo the string; never add it (it
			// holds the account key).
			return nil, fmt.Errorf("creating table store from connection string: %w", err)
		}
	case cfg.Endpoint != "":
		if cfg.Credential == nil {
			return nil, fmt.Errorf("creating table store for %s: no credential", cfg.Endpoint)
		}
		u, perr := url.Parse(cfg.Endpoint)
		if perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("creating table store: endpoint %q is not an http(s) URL", cfg.Endpoint)
		}
		svc, err = aztables.NewServiceClient(strings.TrimRight(cfg.Endpoint, "/"), cfg.Credential, &opts)
		if err != nil {
			return nil, fmt.Errorf("creating table store for %s: %w", cfg.Endpoint, err)
		}
	default:
		return nil, errors.New("creating table store: set a connection string or an endpoint with a credential")
	}
	return &TablesBackend{svc: svc, prefix: cfg.TablePrefix}, nil
}

func (t *TablesBackend) name(table string) string { return t.prefix + table }

func (t *TablesBackend) client(table string) *aztables.Client {
	return t.svc.NewClient(t.name(table))
}

// Table-service error codes (some are not in aztables' TableErrorCode list).
const (
	codeResourceNotFound = "ResourceNotFound"
	codeEntityNotFound   = string(aztables.EntityNotFound)
	codeTableNotFound    = string(aztables.TableNotFound)
	codeEntityExists     = string(aztables.EntityAlreadyExists)
	codeTableExists      = string(aztables.TableAlreadyExists)
	codeConditionFailed  = string(aztables.UpdateConditionNotSatisfied)
	codeEntityTooLarge   = string(aztables.EntityTooLarge)
	codeValueTooLarge    = string(aztables.PropertyValueTooLarge)
)

func responseCode(err error) (string, int, bool) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode, re.StatusCode, true
	}
	return "", 0, false
}

func isTableNotFound(err error) bool {
	code, _, ok := responseCode(err)
	return ok && code == codeTableNotFound
}

// mapTablesErr turns a service error into the package's sentinels, keeping
// the code for the log. Other errors are returned as they are.
func mapTablesErr(err error) error {
	code, status, ok := responseCode(err)
	if !ok {
		return err
	}
	var sentinel error
	switch {
	case code == codeEntityExists || (status == 409 && code == ""):
		sentinel = ErrExists
	case code == codeConditionFailed || status == 412:
		sentinel = ErrConflict
	case code == codeResourceNotFound || code == codeEntityNotFound || code == codeTableNotFound || (status == 404 && code == ""):
		sentinel = ErrNotFound
	case code == codeEntityTooLarge || code == codeValueTooLarge || status == 413:
		sentinel = ErrTooLarge
	default:
		return err
	}
	return fmt.Errorf("%w (%d %s)", sentinel, status, code)
}

// createTable creates the table, treating "already exists" as success.
func (t *TablesBackend) createTable(ctx context.Context, table string) error {
	_, err := t.svc.CreateTable(ctx, t.name(table), nil)
	if code, _, ok := responseCode(err); ok && code == codeTableExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating table %s: %w", t.name(table), err)
	}
	return nil
}

// withTable runs a write; if the table does not exist yet it creates it
// and runs the write once more.
func (t *TablesBackend) withTable(ctx context.Context, table string, op func() error) error {
	err := op()
	if !isTableNotFound(err) {
		return err
	}
	if err := t.createTable(ctx, table); err != nil {
		return err
	}
	return op()
}

// dataChunkUnits is the largest "DataN" property, in UTF-16 code units
// (the service limit is 64 KiB = 32768 units).
const dataChunkUnits = 32000

// splitUTF16 cuts s into pieces of at most max UTF-16 code units, on rune
// boundaries.
func splitUTF16(s string, max int) []string {
	var parts []string
	start, units := 0, 0
	for i, r := range s {
		n := utf16.RuneLen(r)
		if n < 0 { // invalid rune: written as U+FFFD, one unit
			n = 1
		}
		if units > 0 && units+n > max {
			parts = append(parts, s[start:i])
			start, units = i, 0
		}
		units += n
	}
	return append(parts, s[start:])
}

func toTableEntity(e Entity) ([]byte, error) {
	props := map[string]any{"PartitionKey": e.PartitionKey, "RowKey": e.RowKey}
	data := string(e.Data)
	if !utf8.ValidString(data) {
		return nil, ErrInvalidData
	}
	parts := splitUTF16(data, dataChunkUnits)
	if len(parts) == 1 {
		props["Data"] = data
	} else {
		props["DataParts"] = len(parts)
		for i, p := range parts {
			props["Data"+strconv.Itoa(i)] = p
		}
	}
	return json.Marshal(props)
}

// fromTableEntity decodes an entity as the SDK returns it (minimal
// metadata: odata.etag, PartitionKey, RowKey, Timestamp, properties).
func fromTableEntity(raw []byte, etag string) (Entity, error) {
	var props map[string]json.RawMessage
	if err := json.Unmarshal(raw, &props); err != nil {
		return Entity{}, fmt.Errorf("decoding table entity: %w", err)
	}
	str := func(name string) (string, error) {
		v, ok := props[name]
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("decoding table entity property %s: %w", name, err)
		}
		return s, nil
	}
	var e Entity
	var err error
	if e.PartitionKey, err = str("PartitionKey"); err != nil {
		return Entity{}, err
	}
	if e.RowKey, err = str("RowKey"); err != nil {
		return Entity{}, err
	}
	if etag == "" {
		if etag, err = str("odata.etag"); err != nil {
			return Entity{}, err
		}
	}
	e.ETag = etag
	ts, err := str("Timestamp")
	if err != nil {
		return Entity{}, err
	}
	if ts != "" {
		if e.Timestamp, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return Entity{}, fmt.Errorf("decoding table entity timestamp %q: %w", ts, err)
		}
	} else {
		e.Timestamp = timeFromETag(etag)
	}
	var data string
	if rawParts, ok := props["DataParts"]; ok {
		var n int
		if err := json.Unmarshal(rawParts, &n); err != nil || n < 0 || n > 1000 {
			return Entity{}, fmt.Errorf("decoding table entity: bad DataParts %s", rawParts)
		}
		var b strings.Builder
		for i := range n {
			p, err := str("Data" + strconv.Itoa(i))
			if err != nil {
				return Entity{}, err
			}
			b.WriteString(p)
		}
		data = b.String()
	} else if data, err = str("Data"); err != nil {
		return Entity{}, err
	}
	if data != "" {
		e.Data = []byte(data)
	}
	return e, nil
}

// timeFromETag reads the time in a table ETag (W/"datetime'<escaped
// RFC 3339>'"), which is the entity's Timestamp, for writes whose response
// carries no body. Falls back to the local clock.
func timeFromETag(etag string) time.Time {
	const pre, post = `W/"datetime'`, `'"`
	if strings.HasPrefix(etag, pre) && strings.HasSuffix(etag, post) {
		s, err := url.QueryUnescape(etag[len(pre) : len(etag)-len(post)])
		if err == nil {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return t
			}
		}
	}
	return time.Now().UTC()
}

func writtenEntity(e Entity, etag azcore.ETag) Entity {
	return Entity{
		PartitionKey: e.PartitionKey, RowKey: e.RowKey, Data: cloneBytes(e.Data),
		ETag: string(etag), Timestamp: timeFromETag(string(etag)),
	}
}

// Get implements Backend.
func (t *TablesBackend) Get(ctx context.Context, table, pk, rk string) (Entity, error) {
	if err := validateRef(table, pk, rk); err != nil {
		return Entity{}, err
	}
	resp, err := t.client(table).GetEntity(ctx, pk, rk, nil)
	if err != nil {
		return Entity{}, fmt.Errorf("getting %s/%s/%s: %w", table, pk, rk, mapTablesErr(err))
	}
	e, err := fromTableEntity(resp.Value, string(resp.ETag))
	if err != nil {
		return Entity{}, fmt.Errorf("getting %s/%s/%s: %w", table, pk, rk, err)
	}
	return e, nil
}

// Insert implements Backend (AddEntity; 409 EntityAlreadyExists is ErrExists).
func (t *TablesBackend) Insert(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	body, err := toTableEntity(e)
	if err != nil {
		return Entity{}, err
	}
	var resp aztables.AddEntityResponse
	err = t.withTable(ctx, table, func() error {
		var err error
		resp, err = t.client(table).AddEntity(ctx, body, nil)
		return err
	})
	if err != nil {
		return Entity{}, fmt.Errorf("inserting %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, mapTablesErr(err))
	}
	out := writtenEntity(e, resp.ETag)
	if stored, err := fromTableEntity(resp.Value, string(resp.ETag)); err == nil && !stored.Timestamp.IsZero() {
		out.Timestamp = stored.Timestamp
	}
	return out, nil
}

// Update implements Backend (UpdateEntity in replace mode with If-Match:
// e.ETag or "*"; 412 is ErrConflict, 404 ErrNotFound).
func (t *TablesBackend) Update(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	body, err := toTableEntity(e)
	if err != nil {
		return Entity{}, err
	}
	ifMatch := azcore.ETagAny
	if e.ETag != "" {
		ifMatch = azcore.ETag(e.ETag)
	}
	resp, err := t.client(table).UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{
		IfMatch: &ifMatch, UpdateMode: aztables.UpdateModeReplace,
	})
	if err != nil {
		return Entity{}, fmt.Errorf("updating %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, mapTablesErr(err))
	}
	return writtenEntity(e, resp.ETag), nil
}

// Upsert implements Backend (UpsertEntity in replace mode).
func (t *TablesBackend) Upsert(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	body, err := toTableEntity(e)
	if err != nil {
		return Entity{}, err
	}
	var resp aztables.UpsertEntityResponse
	err = t.withTable(ctx, table, func() error {
		var err error
		resp, err = t.client(table).UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
		return err
	})
	if err != nil {
		return Entity{}, fmt.Errorf("upserting %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, mapTablesErr(err))
	}
	return writtenEntity(e, resp.ETag), nil
}

// Delete implements Backend (DeleteEntity with If-Match: etag or "*").
func (t *TablesBackend) Delete(ctx context.Context, table, pk, rk, etag string) error {
	if err := validateRef(table, pk, rk); err != nil {
		return err
	}
	ifMatch := azcore.ETagAny
	if etag != "" {
		ifMatch = azcore.ETag(etag)
	}
	if _, err := t.client(table).DeleteEntity(ctx, pk, rk, &aztables.DeleteEntityOptions{IfMatch: &ifMatch}); err != nil {
		return fmt.Errorf("deleting %s/%s/%s: %w", table, pk, rk, mapTablesErr(err))
	}
	return nil
}

// ODataQuote quotes s as an OData string literal for a table filter:
// single quotes are doubled.
//
//	"PartitionKey eq " + store.ODataQuote("it's") // PartitionKey eq 'it''s'
func ODataQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// List implements Backend, following continuation pages. The service
// returns entities in partition-then-row order.
func (t *TablesBackend) List(ctx context.Context, table, pk string) ([]Entity, error) {
	if err := validateList(table, pk); err != nil {
		return nil, err
	}
	var opts aztables.ListEntitiesOptions
	if pk != "" {
		filter := "PartitionKey eq " + ODataQuote(pk)
		opts.Filter = &filter
	}
	pager := t.client(table).NewListEntitiesPager(&opts)
	var out []Entity
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if isTableNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s/%s: %w", table, pk, mapTablesErr(err))
		}
		for _, raw := range page.Entities {
			e, err := fromTableEntity(raw, "")
			if err != nil {
				return nil, fmt.Errorf("listing %s/%s: %w", table, pk, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// DropTables deletes every table whose name starts with the backend's
// TablePrefix (refused without a prefix). Tests use it to clean up.
func (t *TablesBackend) DropTables(ctx context.Context) error {
	if t.prefix == "" {
		return errors.New("dropping tables: refusing without a table prefix")
	}
	// TableName range filter: names starting with the prefix (case-sensitive
	// in the filter, so both cases of the first letter are not needed: the
	// backend always creates prefix+table).
	filter := "TableName ge " + ODataQuote(t.prefix) + " and TableName lt " + ODataQuote(t.prefix+"{")
	pager := t.svc.NewListTablesPager(&aztables.ListTablesOptions{Filter: &filter})
	var errs []error
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("dropping tables %s*: %w", t.prefix, err)
		}
		for _, tb := range page.Tables {
			if tb.Name == nil || !strings.HasPrefix(*tb.Name, t.prefix) {
				continue
			}
			if _, err := t.svc.DeleteTable(ctx, *tb.Name, nil); err != nil {
				errs = append(errs, fmt.Errorf("dropping table %s: %w", *tb.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close implements Backend. The SDK holds no connection to release.
func (t *TablesBackend) Close() error { return nil }
