package localhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdeflow/mdeflow/internal/wire"
)

const (
	workFn = `{"bindings":[
	  {"name":"msg","type":"serviceBusTrigger","direction":"in","queueName":"work","connection":"ServiceBusConnection"},
	  {"name":"outq","type":"serviceBus","direction":"out","queueName":"done","connection":"ServiceBusConnection"}]}`
	doneFn = `{"bindings":[{"name":"msg","type":"serviceBusTrigger","direction":"in","queueName":"done","connection":"ServiceBusConnection"}]}`
)

func keysOf(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func mustUUID(t *testing.T, what, s string) {
	t.Helper()
	if _, err := uuid.Parse(s); err != nil {
		t.Errorf("%s = %q is not a GUID", what, s)
	}
}

// TestTimerFiresWithExactPayload pins the timer request on the wire: the
// envelope, the headers, TimerInfo with and without the schedule monitor,
// and sys; plus the process environment and the log capture.
func TestTimerFiresWithExactPayload(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json":                   hostJSONBasic,
		"Tick/function.json":          `{"bindings":[{"name":"myTimer","type":"timerTrigger","direction":"in","schedule":"*/1 * * * * *"}]}`,
		"TickNoMonitor/function.json": `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"* * * * * *","useMonitor":false}]}`,
	}, Options{Settings: map[string]string{"TEST_SETTING": "from-settings"}})

	lines := hs.out.waitFor(t, 15*time.Second, "two Tick and one TickNoMonitor invocations", func(l []string) bool {
		return len(records(l, "RECV", "Tick")) >= 2 && len(records(l, "RECV", "TickNoMonitor")) >= 1
	})
	ticks := records(lines, "RECV", "Tick")
	for _, r := range ticks[:2] {
		if r.ContentType != "application/json; charset=utf-8" || r.HostVersion != wire.DefaultHostVersion ||
			r.UA != "Azure-Functions-Host/"+wire.DefaultHostVersion {
			t.Errorf("headers: content type %q, host version %q, user agent %q", r.ContentType, r.HostVersion, r.UA)
		}
		mustUUID(t, "invocation id", r.ID)
	}
	if ticks[0].ID == ticks[1].ID {
		t.Error("two invocations share an invocation id")
	}

	data1, meta1 := ticks[0].envelope(t)
	data2, meta2 := ticks[1].envelope(t)
	if !slices.Equal(keysOf(data1), []string{"myTimer"}) || !slices.Equal(keysOf(meta1), []string{"sys"}) {
		t.Fatalf("Data keys %v, Metadata keys %v; want [myTimer] and [sys]", keysOf(data1), keysOf(meta1))
	}
	type status struct{ Last, Next, LastUpdated string }
	var info1, info2 struct{ ScheduleStatus status }
	_ = json.Unmarshal(data1["myTimer"], &info1)
	_ = json.Unmarshal(data2["myTimer"], &info2)
	next1, err := time.Parse("2006-01-02T15:04:05-07:00", info1.ScheduleStatus.Next)
	if err != nil {
		t.Fatalf("first Next %q: %v", info1.ScheduleStatus.Next, err)
	}
	want1 := fmt.Sprintf(`{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"0001-01-01T00:00:00+00:00","Next":"%s","LastUpdated":"0001-01-01T00:00:00+00:00"},"IsPastDue":false}`,
		next1.Format("2006-01-02T15:04:05+00:00"))
	if string(data1["myTimer"]) != want1 {
		t.Errorf("first TimerInfo\n got %s\nwant %s", data1["myTimer"], want1)
	}
	// The second occurrence sees the first as Last and the next second as Next.
	if info2.ScheduleStatus.Last != info1.ScheduleStatus.Next {
		t.Errorf("second Last = %s, want the first Next %s", info2.ScheduleStatus.Last, info1.ScheduleStatus.Next)
	}
	if want := next1.Add(time.Second).Format("2006-01-02T15:04:05+00:00"); info2.ScheduleStatus.Next != want {
		t.Errorf("second Next = %s, want %s", info2.ScheduleStatus.Next, want)
	}
	if _, err := time.Parse(time.RFC3339Nano, info2.ScheduleStatus.LastUpdated); err != nil {
		t.Errorf("second LastUpdated %q: %v", info2.ScheduleStatus.LastUpdated, err)
	}
	var sys struct{ MethodName, UtcNow, RandGuid string }
	if err := json.Unmarshal(meta2["sys"], &sys); err != nil {
		t.Fatal(err)
	}
	if sys.MethodName != "Tick" || !strings.HasSuffix(sys.UtcNow, "Z") {
		t.Errorf("sys = %+v", sys)
	}
	mustUUID(t, "sys.RandGuid", sys.RandGuid)

	nm := records(lines, "RECV", "TickNoMonitor")[0]
	dataNM, _ := nm.envelope(t)
	if got, want := string(dataNM["t"]), `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}`; got != want {
		t.Errorf("TimerInfo without monitor\n got %s\nwant %s", got, want)
	}

	// Process environment.
	var start string
	for _, l := range lines {
		if strings.HasPrefix(l, "START ") {
			start = l
		}
	}
	env := parseStart(t, start)
	if env.port == 0 || env.port != env.legacyPort || env.worker != env.legacyWorker || env.root != hs.host.App().Root ||
		env.runtime != "custom" || env.setting != "from-settings" || env.cwd != env.root {
		t.Errorf("handler environment: %s", start)
	}
	mustUUID(t, "worker id", env.worker)

	logs, _ := hs.logs.snapshot()
	for _, c := range []struct{ level, msg string }{
		{"WARN", "a warning line from the handler"},
		{"ERROR", "an error line from the handler"},
		{"INFO", "START pid="},
		{"INFO", "ran Tick"},
		{"INFO", "Executed 'Functions.Tick' (Succeeded"},
	} {
		if !logged(logs, c.level, c.msg) {
			t.Errorf("no %s log %q", c.level, c.msg)
		}
	}
	if st, ok := hs.host.TimerStatus("Tick"); !ok || st.Last.IsZero() || !st.Next.After(st.Last) {
		t.Errorf("TimerStatus = %+v, %v", st, ok)
	}
}

type startLine struct {
	pid, port, legacyPort                                   int
	worker, legacyWorker, root, runtime, args, setting, cwd string
}

func parseStart(t *testing.T, line string) startLine {
	t.Helper()
	kv := map[string]string{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "START ")) {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	num := func(k string) int {
		n, err := strconv.Atoi(kv[k])
		if err != nil {
			t.Fatalf("START line %q: %s: %v", line, k, err)
		}
		return n
	}
	return startLine{
		pid: num("pid"), port: num("port"), legacyPort: num("legacy_port"),
		worker: kv["worker"], legacyWorker: kv["legacy_worker"], root: kv["root"], runtime: kv["runtime"],
		args: kv["args"], setting: kv["setting"], cwd: kv["cwd"],
	}
}

// TestHandlerCommandLine launches a handler found relative to the app root
// with expanded arguments and a relative working directory.
func TestHandlerCommandLine(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(handlerBin)
	if err != nil {
		t.Fatal(err)
	}
	root := writeApp(t, map[string]string{
		"host.json": `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"bin/handler","workingDirectory":"data",
			"arguments":["--port=%FUNCTIONS_CUSTOMHANDLER_PORT%","%LOCALHOST_UNSET_VAR%","--mode=%TEST_SETTING%"],"workerArguments":["--last"]}}}`,
		"data/.keep": "",
	})
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "handler"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out := newLineLog()
	h, err := New(Options{AppRoot: root, HandlerOutput: out, Settings: map[string]string{"TEST_SETTING": "fast"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Stop(ctx) }()
	isStart := func(l string) bool { return strings.HasPrefix(l, "START ") }
	lines := out.waitFor(t, 10*time.Second, "the START line", func(l []string) bool { return slices.IndexFunc(l, isStart) >= 0 })
	s := parseStart(t, lines[slices.IndexFunc(lines, isStart)])
	if want := fmt.Sprintf("--port=%d,--mode=fast,--last", s.port); s.args != want || s.cwd != filepath.Join(root, "data") {
		t.Errorf("args %q cwd %q; want %q and %s", s.args, s.cwd, want, filepath.Join(root, "data"))
	}
}

func TestLaunchFailureShutsDown(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, map[string]string{
		"host.json":      `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"not-executable"}}}`,
		"not-executable": "just text",
	}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := h.Start(ctx)
	if !errors.Is(err, ErrTooManyErrors) || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Start = %v", err)
	}
}

func TestTimerRetryPastDueAndManualInvoke(t *testing.T) {
	t.Parallel()
	yearly := `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"0 0 0 1 1 *"}],
	  "retry":{"strategy":"fixedDelay","maxRetryCount":%d,"delayInterval":"00:00:00.05"}}`
	past := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	hs := startHost(t, map[string]string{
		"host.json":                hostJSONBasic,
		"Flaky/function.json":      fmt.Sprintf(yearly, 3),
		"FlakyShort/function.json": fmt.Sprintf(yearly, 1),
		"Yearly/function.json":     `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"0 0 0 1 1 *"}]}`,
	}, Options{TimerStatus: map[string]wire.ScheduleStatus{"Yearly": {Last: past.Add(-time.Hour), Next: past, LastUpdated: past.Add(-time.Hour)}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := hs.host.Invoke(ctx, "Flaky", ""); err != nil {
		t.Fatalf("Invoke Flaky: %v", err)
	}
	lines := hs.waitRecords(t, "Flaky", 3)
	flaky := records(lines, "RECV", "Flaky")
	if len(flaky) != 3 {
		t.Fatalf("Flaky ran %d times, want 3 (fails twice)", len(flaky))
	}
	for i, r := range flaky {
		_, meta := r.envelope(t)
		var rc struct {
			RetryCount, MaxRetryCount int
			Exception                 json.RawMessage
		}
		if err := json.Unmarshal(meta["RetryContext"], &rc); err != nil {
			t.Fatalf("attempt %d RetryContext %s: %v", i, meta["RetryContext"], err)
		}
		if rc.RetryCount != i || rc.MaxRetryCount != 3 {
			t.Errorf("attempt %d RetryContext = %+v", i, rc)
		}
		if (i == 0) != (string(rc.Exception) == "null") || (i > 0 && !strings.Contains(string(rc.Exception), "500")) {
			t.Errorf("attempt %d Exception = %s", i, rc.Exception)
		}
	}

	err := hs.host.Invoke(ctx, "FlakyShort", "")
	if !errors.Is(err, wire.ErrHandlerStatus) {
		t.Errorf("FlakyShort (1 retry) error = %v, want the non-2xx failure", err)
	}
	lines = hs.waitRecords(t, "FlakyShort", 2)
	if n := len(records(lines, "RECV", "FlakyShort")); n != 2 {
		t.Errorf("FlakyShort ran %d times, want 2", n)
	}

	// Yearly's stored Next is an hour ago: it runs once at start-up, past due.
	lines = hs.out.waitFor(t, 10*time.Second, "the past-due Yearly run", func(l []string) bool { return len(records(l, "RECV", "Yearly")) > 0 })
	data, _ := records(lines, "RECV", "Yearly")[0].envelope(t)
	var info struct {
		IsPastDue      bool
		ScheduleStatus struct{ Next string }
	}
	_ = json.Unmarshal(data["t"], &info)
	if !info.IsPastDue || info.ScheduleStatus.Next != past.Format("2006-01-02T15:04:05+00:00") {
		t.Errorf("past-due TimerInfo = %s", data["t"])
	}
	if st, _ := hs.host.TimerStatus("Yearly"); !st.Last.Equal(past) || st.Next.Year() <= past.Year() && st.Next.Month() != time.January {
		t.Errorf("status after the past-due run = %+v", st)
	}
}

// TestQueueRedeliveryAndDeadLetter pins the Service Bus trigger request and
// the abandon/redeliver cycle up to MaxDeliveryCount.
func TestQueueRedeliveryAndDeadLetter(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json":          hostJSONBasic,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}, Options{})
	err := hs.host.Enqueue("work", Message{
		MessageID: "m-fail", CorrelationID: "corr-1", Subject: "alert", ContentType: "text/plain",
		Body: []byte("fail"), Properties: map[string]any{"tenant": "contoso"},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs.waitIdle(t, 60*time.Second)

	lines := hs.waitRecords(t, "Work", 10)
	recs := records(lines, "RECV", "Work")
	if len(recs) != 10 {
		t.Fatalf("Work received %d deliveries, want 10", len(recs))
	}
	tokens := map[string]bool{}
	for i, r := range recs {
		data, meta := r.envelope(t)
		if got := string(data["msg"]); got != `"\"fail\""` {
			t.Errorf("Data.msg = %s, want the double-encoded string", got)
		}
		if got := string(meta["DeliveryCount"]); got != fmt.Sprintf(`"%d"`, i+1) {
			t.Errorf("delivery %d: DeliveryCount = %s", i+1, got)
		}
		if string(meta["SequenceNumber"]) != `"1"` || string(meta["MessageId"]) != `"\"m-fail\""` ||
			string(meta["CorrelationId"]) != `"\"corr-1\""` || string(meta["Label"]) != `"\"alert\""` ||
			string(meta["ApplicationProperties"]) != `{"tenant":"contoso"}` {
			t.Errorf("delivery %d metadata: seq %s id %s corr %s label %s props %s", i+1, meta["SequenceNumber"],
				meta["MessageId"], meta["CorrelationId"], meta["Label"], meta["ApplicationProperties"])
		}
		tok := metaString(t, meta, "LockToken")
		mustUUID(t, "LockToken", tok)
		tokens[tok] = true
		if i == 0 {
			enq, err1 := time.Parse("2006-01-02T15:04:05", metaString(t, meta, "EnqueuedTimeUtc"))
			exp, err2 := time.Parse("2006-01-02T15:04:05-07:00", metaString(t, meta, "ExpiresAt"))
			if err1 != nil || err2 != nil || exp.Sub(enq) != 14*24*time.Hour {
				t.Errorf("EnqueuedTimeUtc %s / ExpiresAt %s (%v %v), want 14 days apart", meta["EnqueuedTimeUtc"], meta["ExpiresAt"], err1, err2)
			}
			if _, ok := meta["SessionId"]; ok {
				t.Error("SessionId present although the message has none")
			}
		}
	}
	if len(tokens) != 10 {
		t.Errorf("%d distinct lock tokens over 10 deliveries", len(tokens))
	}
	dl := hs.host.DeadLetters("work")
	if len(dl) != 1 {
		t.Fatalf("dead letters = %+v", dl)
	}
	d := dl[0]
	if d.DeadLetterReason != "MaxDeliveryCountExceeded" || d.DeliveryCount != 10 || d.MessageID != "m-fail" ||
		!strings.Contains(d.DeadLetterErrorDescription, "deliberate failure") || !strings.Contains(d.DeadLetterErrorDescription, "500") {
		t.Errorf("dead letter = %+v", d)
	}
	st := hs.host.Stats()
	if st.Invocations != 10 || st.Failures != 10 || st.Running != 0 {
		t.Errorf("stats = %+v", st)
	}
	logs, _ := hs.logs.snapshot()
	if !logged(logs, "ERROR", "message dead-lettered") || !logged(logs, "WARN", "message abandoned") {
		t.Error("abandon / dead-letter not logged")
	}
}

func adminDo(t *testing.T, hs *harness, method, path, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, hs.host.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("x-functions-key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestQueueAdminOutputsDuplicatesScheduled goes through the admin queue
// endpoint: duplicate detection, scheduled enqueue, output bindings.
func TestQueueAdminOutputsDuplicatesScheduled(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json":          hostJSONBasic,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}, Options{DuplicateDetectionWindow: 2 * time.Second})
	_, master := hs.host.Keys()
	fnKey, _ := hs.host.Keys()

	if code, _ := adminDo(t, hs, "POST", "/admin/queues/work/messages", "", `{"body":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("without key: %d, want 401", code)
	}
	if code, _ := adminDo(t, hs, "POST", "/admin/queues/work/messages", fnKey, `{"body":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("with the function key: %d, want 401", code)
	}
	if code, _ := adminDo(t, hs, "POST", "/admin/queues/nope/messages", master, `{"body":"x"}`); code != http.StatusNotFound {
		t.Errorf("unknown queue: %d, want 404", code)
	}
	if code, body := adminDo(t, hs, "POST", "/admin/queues/work/messages", master, `{"bdy":"x"}`); code != http.StatusBadRequest || !strings.Contains(body, "bdy") {
		t.Errorf("unknown field: %d %s, want 400", code, body)
	}

	later := time.Now().Add(1500 * time.Millisecond).UTC()
	batch := fmt.Sprintf(`[
	  {"messageId":"dup","body":"out:x","applicationProperties":{"n":5}},
	  {"messageId":"dup","body":"out:x"},
	  {"messageId":"later","body":"ok","scheduledEnqueueTimeUtc":%q}]`, later.Format(time.RFC3339Nano))
	if code, body := adminDo(t, hs, "POST", "/admin/queues/work/messages", master, batch); code != http.StatusCreated {
		t.Fatalf("enqueue batch: %d %s", code, body)
	}
	code, body := adminDo(t, hs, "GET", "/admin/queues", master, "")
	var qs []QueueStats
	if err := json.Unmarshal([]byte(body), &qs); code != http.StatusOK || err != nil {
		t.Fatalf("GET /admin/queues: %d %s", code, body)
	}
	if i := slices.IndexFunc(qs, func(q QueueStats) bool { return q.Name == "work" }); i < 0 || qs[i].Scheduled != 1 || qs[i].Duplicates != 1 {
		t.Errorf("queue stats = %+v", qs)
	}
	hs.waitIdle(t, 20*time.Second)

	lines := hs.out.waitFor(t, 10*time.Second, "2 Work and 2 Done records", func(l []string) bool {
		return len(records(l, "RECV", "Work")) >= 2 && len(records(l, "RECV", "Done")) >= 2
	})
	var bodies []string
	for _, r := range records(lines, "RECV", "Work") {
		data, meta := r.envelope(t)
		var s string
		_ = json.Unmarshal(data["msg"], &s)
		bodies = append(bodies, s)
		if s == `"ok"` {
			enq, err := time.Parse("2006-01-02T15:04:05", metaString(t, meta, "EnqueuedTimeUtc"))
			if err != nil || enq.Before(later.Truncate(time.Second)) {
				t.Errorf("scheduled message EnqueuedTimeUtc = %s, want >= %s", meta["EnqueuedTimeUtc"], later)
			}
		}
		if s == `"out:x"` && string(meta["ApplicationProperties"]) != `{"n":5}` {
			t.Errorf("ApplicationProperties = %s", meta["ApplicationProperties"])
		}
	}
	if !slices.Equal(bodies, []string{`"out:x"`, `"ok"`}) {
		t.Errorf("Work bodies = %v, want the duplicate dropped and the scheduled one last", bodies)
	}
	var outs []string
	for _, r := range records(lines, "RECV", "Done") {
		data, meta := r.envelope(t)
		outs = append(outs, metaString(t, map[string]json.RawMessage{"m": data["msg"]}, "m"))
		if ct := metaString(t, meta, "ContentType"); ct != "text/plain" {
			t.Errorf("output message ContentType = %q", ct)
		}
	}
	sort.Strings(outs)
	if want := []string{"first x", "{\n  \"k\": 1\n}"}; !slices.Equal(outs, want) {
		t.Errorf("output messages = %q, want %q", outs, want)
	}
	logs, _ := hs.logs.snapshot()
	if !logged(logs, "WARN", `Outputs key "Outq" matches output binding "outq" only case-insensitively`) {
		t.Error("no warning for the mis-cased Outputs key")
	}

	// Past the detection window the same MessageId is accepted again.
	time.Sleep(2100 * time.Millisecond)
	if code, body := adminDo(t, hs, "POST", "/admin/queues/work/messages", master, `{"messageId":"dup","body":"again"}`); code != http.StatusCreated {
		t.Fatalf("re-send: %d %s", code, body)
	}
	hs.waitIdle(t, 10*time.Second)
	lines = hs.waitRecords(t, "Work", 3)
	if n := len(records(lines, "RECV", "Work")); n != 3 {
		t.Errorf("Work deliveries = %d, want 3", n)
	}

	// Explicit dead-letter, listing and resubmit over the admin API.
	if code, body := adminDo(t, hs, "POST", "/admin/queues/done/deadletters", master,
		`{"messageId":"poison","body":"p","deadLetterReason":"InvalidAlert","deadLetterErrorDescription":"bad id"}`); code != http.StatusCreated {
		t.Fatalf("dead-letter: %d %s", code, body)
	}
	code, body = adminDo(t, hs, "GET", "/admin/queues/done/deadletters", master, "")
	var dls []struct {
		SequenceNumber   int64  `json:"sequenceNumber"`
		Body             string `json:"body"`
		DeadLetterReason string `json:"deadLetterReason"`
	}
	if err := json.Unmarshal([]byte(body), &dls); code != http.StatusOK || err != nil || len(dls) != 1 || dls[0].Body != "p" || dls[0].DeadLetterReason != "InvalidAlert" {
		t.Fatalf("dead letters: %d %s", code, body)
	}
	if code, body := adminDo(t, hs, "POST", fmt.Sprintf("/admin/queues/done/deadletters/%d/resubmit", dls[0].SequenceNumber), master, ""); code != http.StatusNoContent {
		t.Fatalf("resubmit: %d %s", code, body)
	}
	hs.waitIdle(t, 10*time.Second)
	if len(hs.host.DeadLetters("done")) != 0 {
		t.Error("resubmitted message still dead-lettered")
	}
}

func httpDo(t *testing.T, method, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHTTPFrontEnd covers forwarding mode, payload mode, routes, methods
// and keys.
func TestHTTPFrontEnd(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json": `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"},"enableForwardingHttpRequest":true}}`,
		"Hello/function.json": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","methods":["get","post"],"route":"hello"},
			{"name":"res","type":"http","direction":"out"}]}`,
		"Open/function.json": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","authLevel":"anonymous","route":"open"},
			{"name":"res","type":"http","direction":"out"}]}`,
		"Echo/function.json": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","route":"echo/{id:int}"},
			{"name":"res","type":"http","direction":"out"},
			{"name":"outq","type":"serviceBus","direction":"out","queueName":"echoes","connection":"ServiceBusConnection"}]}`,
		"Ret/function.json": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","authLevel":"admin"},
			{"name":"$return","type":"http","direction":"out"},
			{"name":"outq","type":"serviceBus","direction":"out","queueName":"echoes","connection":"ServiceBusConnection"}]}`,
	}, Options{FunctionKey: "fn-key-123", MasterKey: "master-key-456"})
	base := hs.host.URL()

	tests := []struct {
		name       string
		method     string
		path       string
		hdr        map[string]string
		body       string
		wantStatus int
		wantBody   string
		wantHeader [2]string
	}{
		{"no key", "GET", "/api/hello?name=bob", nil, "", 401, "", [2]string{}},
		{"wrong key", "GET", "/api/hello?name=bob&code=nope", nil, "", 401, "", [2]string{}},
		{"status passes through (forwarding)", "GET", "/api/hello?name=bob&status=418&code=fn-key-123", map[string]string{"X-Custom": "c1"}, "", 418, "hello bob", [2]string{"X-Handler", "forwarded"}},
		{"master key works for function level", "GET", "/api/hello?name=al", map[string]string{"x-functions-key": "master-key-456"}, "", 200, "hello al", [2]string{}},
		{"redirect is not followed", "GET", "/api/hello?do=redirect", map[string]string{"x-functions-key": "fn-key-123"}, "", 302, "", [2]string{"Location", "/elsewhere"}},
		{"method not allowed is 404", "PUT", "/api/hello?code=fn-key-123", nil, "", 404, "", [2]string{}},
		{"anonymous", "POST", "/api/open", nil, "abc", 200, "hello ", [2]string{}},
		{"payload mode with a queue output", "POST", "/api/echo/7?x=1", map[string]string{"x-functions-key": "fn-key-123", "Content-Type": "application/json"}, `{"a":1}`, 201, "", [2]string{"X-Echo", "yes"}},
		{"route constraint", "GET", "/api/echo/abc?code=fn-key-123", nil, "", 404, "", [2]string{}},
		{"admin level refuses the function key", "GET", "/api/Ret?code=fn-key-123", nil, "", 401, "", [2]string{}},
		{"$return answer", "GET", "/api/Ret?code=master-key-456", nil, "", 404, "nothing here", [2]string{}},
		{"unknown route", "GET", "/api/nothing", nil, "", 404, "", [2]string{}},
		{"no prefix", "GET", "/hello", nil, "", 404, "", [2]string{}},
	}
	for _, tt := range tests {
		resp, body := httpDo(t, tt.method, base+tt.path, tt.hdr, tt.body)
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d (body %q)", tt.name, resp.StatusCode, tt.wantStatus, body)
		}
		if tt.wantBody != "" && body != tt.wantBody {
			t.Errorf("%s: body %q, want %q", tt.name, body, tt.wantBody)
		}
		if tt.wantHeader[0] != "" && resp.Header.Get(tt.wantHeader[0]) != tt.wantHeader[1] {
			t.Errorf("%s: header %s = %q, want %q", tt.name, tt.wantHeader[0], resp.Header.Get(tt.wantHeader[0]), tt.wantHeader[1])
		}
		if tt.name == "payload mode with a queue output" {
			var req struct {
				Method     string
				Query      map[string]string
				Params     map[string]string
				Body       string
				Identities []struct {
					AuthenticationType string
					Claims             []struct{ Type, Value string }
				}
			}
			if err := json.Unmarshal([]byte(body), &req); err != nil {
				t.Fatalf("echo body %q: %v", body, err)
			}
			if req.Method != "POST" || req.Query["x"] != "1" || req.Params["id"] != "7" || req.Body != `{"a":1}` ||
				len(req.Identities) != 1 || req.Identities[0].AuthenticationType != "WebJobsAuthLevel" {
				t.Errorf("handler saw %+v", req)
			}
			levels := map[string]string{}
			for _, c := range req.Identities[0].Claims {
				levels[c.Type] = c.Value
			}
			if levels[wire.ClaimAuthLevel] != "Function" || levels[wire.ClaimKeyID] != "default" {
				t.Errorf("claims = %v", levels)
			}
		}
	}

	lines := hs.out.waitFor(t, 10*time.Second, "the forwarded requests", func(l []string) bool {
		n := 0
		for _, x := range l {
			if strings.HasPrefix(x, "FWD ") && (strings.Contains(x, "status=418") || strings.Contains(x, `"uri":"/api/open"`)) {
				n++
			}
		}
		return n >= 2
	})
	var fwd []struct {
		Method, URI, Host, ID, HostVersion, UA, Custom, Body string
		ContentLength                                        int64
	}
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "FWD "); ok {
			var f struct {
				Method, URI, Host, ID, HostVersion, UA, Custom, Body string
				ContentLength                                        int64
			}
			_ = json.Unmarshal([]byte(rest), &f)
			fwd = append(fwd, f)
		}
	}
	i := slices.IndexFunc(fwd, func(f struct {
		Method, URI, Host, ID, HostVersion, UA, Custom, Body string
		ContentLength                                        int64
	}) bool {
		return strings.Contains(f.URI, "status=418")
	})
	if i < 0 {
		t.Fatalf("forwarded requests: %+v", fwd)
	}
	f := fwd[i]
	if f.Method != "GET" || f.URI != "/api/hello?name=bob&status=418&code=fn-key-123" || f.Custom != "c1" ||
		f.HostVersion != wire.DefaultHostVersion || f.UA != "Azure-Functions-Host/"+wire.DefaultHostVersion ||
		f.Host != strings.TrimPrefix(base, "http://") {
		t.Errorf("forwarded request = %+v", f)
	}
	mustUUID(t, "forwarded invocation id", f.ID)
	if j := slices.IndexFunc(fwd, func(f struct {
		Method, URI, Host, ID, HostVersion, UA, Custom, Body string
		ContentLength                                        int64
	}) bool {
		return f.URI == "/api/open"
	}); j < 0 || fwd[j].Body != "abc" || fwd[j].ContentLength != 3 {
		t.Errorf("forwarded POST body: %+v", fwd)
	}
	if len(records(lines, "RECV", "Hello")) != 0 {
		t.Error("a forwardable function was invoked in payload mode")
	}
	if st := hs.host.Stats(); slices.IndexFunc(st.Queues, func(q QueueStats) bool { return q.Name == "echoes" && q.Active == 1 }) < 0 {
		t.Errorf("the Echo queue output did not arrive: %+v", st.Queues)
	}
	if resp, body := httpDo(t, "GET", base+"/", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, "up and running") {
		t.Errorf("GET / = %d %q", resp.StatusCode, body)
	}
	// Invoke goes through the same path with a synthetic POST.
	if err := hs.host.Invoke(context.Background(), "Echo", `{"b":2}`); err != nil {
		t.Errorf("Invoke Echo: %v", err)
	}
}

func TestHandlerCrashRestartsAndRedelivers(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json":          hostJSONBasic,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}, Options{})
	if err := hs.host.Enqueue("work", Message{MessageID: "crash", Body: []byte("slow-once")}); err != nil {
		t.Fatal(err)
	}
	hs.out.waitFor(t, 10*time.Second, "the first delivery", func(l []string) bool { return len(records(l, "RECV", "Work")) == 1 })
	if err := hs.host.KillHandler(); err != nil {
		t.Fatal(err)
	}
	hs.waitIdle(t, 30*time.Second)
	lines := hs.waitRecords(t, "Work", 2)
	recs := records(lines, "RECV", "Work")
	if len(recs) != 2 {
		t.Fatalf("deliveries = %d, want 2", len(recs))
	}
	_, m1 := recs[0].envelope(t)
	_, m2 := recs[1].envelope(t)
	if string(m1["DeliveryCount"]) != `"1"` || string(m2["DeliveryCount"]) != `"2"` || recs[0].Pid == recs[1].Pid {
		t.Errorf("deliveries: count %s pid %d, then count %s pid %d", m1["DeliveryCount"], recs[0].Pid, m2["DeliveryCount"], recs[1].Pid)
	}
	if r := hs.host.Restarts(); r != 1 {
		t.Errorf("Restarts = %d, want 1", r)
	}
	if st := hs.host.Stats(); st.Launches != 2 || st.HandlerState != "Running" || len(hs.host.DeadLetters("work")) != 0 {
		t.Errorf("stats = %+v", st)
	}
	if hs.host.Err() != nil {
		t.Errorf("Err = %v", hs.host.Err())
	}
}

func TestFunctionTimeoutRestartsHandler(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json":          `{"version":"2.0","functionTimeout":"00:00:01","customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"}}}`,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}, Options{})
	if err := hs.host.Enqueue("work", Message{Body: []byte("hang-once")}); err != nil {
		t.Fatal(err)
	}
	hs.waitIdle(t, 30*time.Second)
	lines := hs.waitRecords(t, "Work", 2)
	recs := records(lines, "RECV", "Work")
	if len(recs) != 2 || recs[0].Pid == recs[1].Pid {
		t.Fatalf("deliveries = %+v, want 2 on different processes", recs)
	}
	logs, _ := hs.logs.snapshot()
	if !logged(logs, "ERROR", "Timeout value of 00:00:01 exceeded by function 'Functions.Work'") {
		t.Error("timeout not logged")
	}
	if hs.host.Restarts() != 1 || hs.host.Err() != nil {
		t.Errorf("restarts %d, err %v", hs.host.Restarts(), hs.host.Err())
	}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newHost(t *testing.T, files map[string]string, opts Options) (*Host, *lineLog) {
	t.Helper()
	out := newLineLog()
	opts.AppRoot = writeApp(t, files)
	opts.HandlerOutput = out
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h, out
}

func TestReadinessTimeoutShutsDownAfterThreeErrors(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, map[string]string{"host.json": hostJSONBasic},
		Options{Settings: map[string]string{"HANDLER_MODE": "never-listen"}, ReadyTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := h.Start(ctx)
	if !errors.Is(err, ErrTooManyErrors) || !strings.Contains(err.Error(), "did not answer GET / on 127.0.0.1") {
		t.Fatalf("Start error = %v", err)
	}
	if st := h.Stats(); st.Launches != 3 || st.HandlerState != "Error" && st.HandlerState != "Stopped" {
		t.Errorf("stats = %+v, want 3 launches", st)
	}
	if err := h.Stop(ctx); err != nil {
		t.Errorf("Stop after a failed Start: %v", err)
	}
}

func TestExitCodeZeroIsNotRestarted(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, map[string]string{"host.json": hostJSONBasic, "Work/function.json": workFn, "Done/function.json": doneFn},
		Options{Settings: map[string]string{"HANDLER_MODE": "exit0", "ServiceBusConnection": "x"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Stop(ctx) }()
	select {
	case <-h.Done():
	case <-ctx.Done():
		t.Fatal("the host did not notice the exit")
	}
	if !errors.Is(h.Err(), ErrHandlerExited) || h.Stats().Launches != 1 || h.Stats().HandlerState != "Exited" {
		t.Errorf("Err %v, stats %+v", h.Err(), h.Stats())
	}
	if err := h.WaitIdle(ctx); !errors.Is(err, ErrHandlerExited) {
		t.Errorf("WaitIdle = %v", err)
	}
	// Messages wait in the queue instead of being dead-lettered.
	if err := h.Enqueue("work", Message{Body: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if q := h.Stats().Queues; q[slices.IndexFunc(q, func(s QueueStats) bool { return s.Name == "work" })].Active != 1 {
		t.Errorf("queues = %+v", q)
	}
}

func TestKillsCountTowardTheErrorLimit(t *testing.T) {
	t.Parallel()
	for _, exclude := range []bool{false, true} {
		t.Run(fmt.Sprintf("exclude=%v", exclude), func(t *testing.T) {
			t.Parallel()
			hs := startHost(t, map[string]string{"host.json": hostJSONBasic}, Options{ExcludeKillsFromErrorLimit: exclude})
			for i := range 3 {
				eventually(t, 15*time.Second, "a running handler", func() bool { return hs.host.Stats().HandlerState != "Initializing" })
				if err := hs.host.KillHandler(); err != nil {
					t.Fatalf("kill %d: %v", i, err)
				}
				deadline := time.Now().Add(15 * time.Second)
				for hs.host.Stats().Launches < i+2 && hs.host.Err() == nil && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if i < 2 && hs.host.Err() != nil {
					t.Fatalf("host gave up after %d kills: %v", i+1, hs.host.Err())
				}
			}
			err := hs.host.Err()
			if exclude && err != nil {
				t.Errorf("excluded kills shut the host down: %v", err)
			}
			if !exclude && !errors.Is(err, ErrTooManyErrors) {
				t.Errorf("after 3 kills Err = %v, want ErrTooManyErrors", err)
			}
		})
	}
}

func TestBadHandlerAnswersFailTheInvocation(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{"host.json": hostJSONBasic, "Work/function.json": workFn, "Done/function.json": doneFn},
		Options{MaxDeliveryCount: 1})
	for _, b := range []string{"badjson", "empty"} {
		if err := hs.host.Enqueue("work", Message{MessageID: b, Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := hs.host.Enqueue("work", Message{MessageID: "binary", Body: []byte{0xff, 0xfe}}); err != nil {
		t.Fatal(err)
	}
	hs.waitIdle(t, 20*time.Second)
	got := map[string]string{}
	for _, d := range hs.host.DeadLetters("work") {
		got[d.MessageID] = d.DeadLetterErrorDescription
	}
	for id, want := range map[string]string{"badjson": "non-JSON content type", "empty": "empty body", "binary": "not valid UTF-8"} {
		if !strings.Contains(got[id], want) {
			t.Errorf("%s: dead-letter description %q, want it to mention %q", id, got[id], want)
		}
	}
}

func TestSessionsDeliverInOrder(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json": hostJSONBasic,
		"Sess/function.json": `{"bindings":[{"name":"msg","type":"serviceBusTrigger","direction":"in","queueName":"sess",
			"connection":"ServiceBusConnection","isSessionsEnabled":true}]}`,
	}, Options{})
	var msgs []Message
	for i := 1; i <= 3; i++ {
		for _, s := range []string{"A", "B"} {
			msgs = append(msgs, Message{SessionID: s, Body: []byte(fmt.Sprintf("sleep:%d", 50+i)), Subject: fmt.Sprintf("%s%d", s, i)})
		}
	}
	if err := hs.host.Send(context.Background(), "sess", msgs...); err != nil {
		t.Fatal(err)
	}
	if err := hs.host.Enqueue("sess", Message{Body: []byte("x")}); err == nil {
		t.Error("a message without SessionId was accepted by a session queue")
	}
	hs.waitIdle(t, 20*time.Second)
	lines := hs.waitRecords(t, "Sess", 6)
	order := map[string][]string{}
	for _, r := range records(lines, "RECV", "Sess") {
		_, meta := r.envelope(t)
		s := metaString(t, meta, "SessionId")
		order[s] = append(order[s], metaString(t, meta, "Subject"))
	}
	if !slices.Equal(order["A"], []string{"A1", "A2", "A3"}) || !slices.Equal(order["B"], []string{"B1", "B2", "B3"}) {
		t.Errorf("per-session order = %v", order)
	}
}

func TestAdminInvokeAndStatus(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json":          hostJSONBasic,
		"Tick/function.json": `{"bindings":[{"name":"myTimer","type":"timerTrigger","direction":"in","schedule":"0 0 0 1 1 *"}]}`,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}, Options{DisableTimers: true})
	_, master := hs.host.Keys()
	if code, _ := adminDo(t, hs, "POST", "/admin/functions/Tick", "", `{"input":""}`); code != http.StatusUnauthorized {
		t.Errorf("without key: %d", code)
	}
	if code, _ := adminDo(t, hs, "POST", "/admin/functions/Nope", master, `{"input":""}`); code != http.StatusNotFound {
		t.Errorf("unknown function: %d", code)
	}
	if code, body := adminDo(t, hs, "POST", "/admin/functions/tick", master, `{"input":""}`); code != http.StatusAccepted {
		t.Fatalf("invoke timer: %d %s", code, body)
	}
	if code, body := adminDo(t, hs, "POST", "/admin/functions/Work", master, `{"input":"from admin"}`); code != http.StatusAccepted {
		t.Fatalf("invoke queue trigger: %d %s", code, body)
	}
	lines := hs.out.waitFor(t, 10*time.Second, "Tick and Work", func(l []string) bool {
		return len(records(l, "RECV", "Tick")) == 1 && len(records(l, "RECV", "Work")) == 1
	})
	data, _ := records(lines, "RECV", "Work")[0].envelope(t)
	if string(data["msg"]) != `"\"from admin\""` {
		t.Errorf("Work got %s", data["msg"])
	}
	hs.waitIdle(t, 10*time.Second)
	code, body := adminDo(t, hs, "GET", "/admin/host/status", master, "")
	var st struct {
		State       string `json:"state"`
		Invocations int64  `json:"invocations"`
	}
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.State != "Running" || st.Invocations != 2 {
		t.Errorf("status: %d %s", code, body)
	}
}

func TestMaxConcurrentCallsAndChunkedRequests(t *testing.T) {
	t.Parallel()
	hs := startHost(t, map[string]string{
		"host.json": `{"version":"2.0","extensions":{"serviceBus":{"maxConcurrentCalls":2}},
			"customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"}}}`,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
	}, Options{ChunkedRequests: true})
	for range 6 {
		if err := hs.host.Enqueue("work", Message{Body: []byte("sleep:200")}); err != nil {
			t.Fatal(err)
		}
	}
	peak := 0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	idle := make(chan error, 1)
	go func() { idle <- hs.host.WaitIdle(ctx) }()
	for waiting := true; waiting; {
		select {
		case err := <-idle:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		case <-time.After(5 * time.Millisecond):
			peak = max(peak, hs.host.Stats().Running)
		}
	}
	if peak != 2 {
		t.Errorf("peak concurrency = %d, want maxConcurrentCalls = 2", peak)
	}
	lines := hs.waitRecords(t, "Work", 6)
	for _, r := range records(lines, "RECV", "Work") {
		if r.ContentLength != -1 {
			t.Errorf("ContentLength = %d, want -1 (chunked)", r.ContentLength)
		}
	}
}

// TestStopLeavesNoGoroutines runs every kind of work, stops the host and
// checks that none of its goroutines (nor HTTP connections) survive.
func TestStopLeavesNoGoroutines(t *testing.T) {
	// Not parallel: it inspects all goroutines (parallel tests are paused
	// while it runs).
	hs := &harness{out: newLineLog(), logs: newLineLog()}
	root := writeApp(t, map[string]string{
		"host.json":          `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"},"enableForwardingHttpRequest":true}}`,
		"Tick/function.json": `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"* * * * * *"}]}`,
		"Work/function.json": workFn,
		"Done/function.json": doneFn,
		"Open/function.json": `{"bindings":[{"name":"req","type":"httpTrigger","direction":"in","authLevel":"anonymous","route":"open"},{"name":"res","type":"http","direction":"out"}]}`,
	})
	h, err := New(Options{AppRoot: root, HandlerOutput: hs.out, Settings: map[string]string{"ServiceBusConnection": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	hs.host = h
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Enqueue("work", Message{Body: []byte("out:z"), ScheduledEnqueueTime: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := h.Enqueue("work", Message{Body: []byte("sleep:5000")}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{}
	resp, err := client.Get(h.URL() + "/api/open")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	hs.waitRecords(t, "Tick", 1)
	hs.waitRecords(t, "Work", 1)

	if len(leakedGoroutines()) == 0 {
		t.Fatal("the goroutine check sees nothing while the host runs; it would not catch a leak")
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer stopCancel()
	// The 5 s invocation outlives the drain period: Stop reports it, kills
	// the handler and releases the message.
	if err := h.Stop(stopCtx); err == nil || !strings.Contains(err.Error(), "running invocation") {
		t.Errorf("Stop = %v, want the drain timeout reported", err)
	}
	if q := h.Stats().Queues; q[slices.IndexFunc(q, func(s QueueStats) bool { return s.Name == "work" })].Active != 1 {
		t.Errorf("the interrupted message was not released: %+v", q)
	}
	eventually(t, 5*time.Second, "the host goroutines to end", func() bool { return len(leakedGoroutines()) == 0 })
	if err := h.Invoke(ctx, "Tick", ""); !errors.Is(err, ErrHostStopped) {
		t.Errorf("Invoke after Stop = %v", err)
	}
}

// leakedGoroutines returns the stacks of goroutines running code of this
// package (outside tests) or holding HTTP client connections.
func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		mine := false
		for _, line := range strings.Split(g, "\n") {
			line = strings.TrimSpace(line)
			if strings.Contains(line, "/internal/localhost/") && !strings.Contains(line, "_test.go") {
				mine = true
			}
		}
		if mine || strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	return out
}
