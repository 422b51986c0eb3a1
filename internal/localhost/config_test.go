package localhost

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const timerFn = `{"bindings":[{"name":"myTimer","type":"timerTrigger","direction":"in","schedule":"0 */5 * * * *"}]}`

func TestLoadAppErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		file  string   // file the error must name
		want  []string // substrings of the error
	}{
		{
			name:  "host.json missing",
			files: map[string]string{"F/function.json": timerFn},
			want:  []string{"reading host.json"},
		},
		{
			name:  "invalid JSON reports the line",
			files: map[string]string{"host.json": "{\n \"version\": \"2.0\",\n \"customHandler\": {\n}}}"},
			file:  "host.json",
			want:  []string{"invalid JSON at line 4"},
		},
		{
			name:  "version missing",
			files: map[string]string{"host.json": `{"customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"}}}`},
			file:  "host.json",
			want:  []string{"'version' property is missing"},
		},
		{
			name:  "customHandler missing",
			files: map[string]string{"host.json": `{"version":"2.0"}`},
			file:  "host.json",
			want:  []string{"customHandler section is missing"},
		},
		{
			name:  "empty executable",
			files: map[string]string{"host.json": `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":""}}}`},
			file:  "host.json",
			want:  []string{"defaultExecutablePath cannot be empty"},
		},
		{
			name:  "executable nowhere",
			files: map[string]string{"host.json": `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"no-such-handler-xyz"}}}`},
			file:  "host.json",
			want:  []string{`"no-such-handler-xyz": no such file`, "not found on PATH"},
		},
		{
			name: "bad functionTimeout and maxConcurrentCalls",
			files: map[string]string{"host.json": `{"version":"2.0","functionTimeout":"5 minutes",
				"extensions":{"serviceBus":{"maxConcurrentCalls":0}},
				"customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"}}}`},
			file: "host.json",
			want: []string{"functionTimeout", "maxConcurrentCalls must be at least 1"},
		},
		{
			name:  "wrong JSON type",
			files: map[string]string{"host.json": `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}","arguments":"--x"}}}`},
			file:  "host.json",
			want:  []string{"arguments has the wrong type"},
		},
		{
			name:  "autoComplete false",
			files: map[string]string{"host.json": `{"version":"2.0","extensions":{"serviceBus":{"autoCompleteMessages":false}},"customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"}}}`},
			file:  "host.json",
			want:  []string{"autoCompleteMessages false"},
		},
		{
			name:  "unknown binding type",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[{"name":"q","type":"queueTrigger","direction":"in"}]}`},
			file:  "F/function.json",
			want:  []string{`binding type "queueTrigger" is not supported`},
		},
		{
			name: "two triggers and duplicate names",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[
				{"name":"t","type":"timerTrigger","direction":"in","schedule":"* * * * * *"},
				{"name":"T","type":"httpTrigger","direction":"in"}]}`},
			file: "F/function.json",
			want: []string{"multiple bindings are named", "multiple trigger bindings"},
		},
		{
			name:  "no trigger",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[{"name":"res","type":"http","direction":"out"}]}`},
			file:  "F/function.json",
			want:  []string{"no trigger binding"},
		},
		{
			name:  "bad schedule",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"0 */5 * * *"}]}`},
			file:  "F/function.json",
			want:  []string{"NCRONTAB needs 6 fields", "got 5"},
		},
		{
			name:  "schedule setting undefined",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"%NoSuchScheduleSetting%"}]}`},
			file:  "F/function.json",
			want:  []string{"NoSuchScheduleSetting that are not defined"},
		},
		{
			name: "service bus problems",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[
				{"name":"m","type":"serviceBusTrigger","direction":"in","queueName":"q","connection":"MissingConn","cardinality":"many"},
				{"name":"o","type":"serviceBus","direction":"out","topicName":"t","connection":"ServiceBusConnection"}]}`},
			file: "F/function.json",
			want: []string{`connection app setting "MissingConn"`, "cardinality \"many\"", "topicName is not supported", "queueName is missing"},
		},
		{
			name: "http problems",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[
				{"name":"req","type":"httpTrigger","direction":"in","authLevel":"secret","methods":["get","fetch"],"route":"a/{b}{c}"},
				{"name":"res","type":"http","direction":"out"}]}`},
			file: "F/function.json",
			want: []string{`authLevel "secret"`, `method "fetch"`},
		},
		{
			name: "bad route and retry",
			files: map[string]string{"host.json": hostJSONBasic, "F/function.json": `{"bindings":[
				{"name":"req","type":"httpTrigger","direction":"in","route":"a/{b}{c}"}],
				"retry":{"strategy":"linear","maxRetryCount":2}}`},
			file: "F/function.json",
			want: []string{"exactly one {parameter}", `strategy "linear"`},
		},
		{
			name:  "bad function name and direction",
			files: map[string]string{"host.json": hostJSONBasic, "9lives/function.json": `{"bindings":[{"name":"t","type":"timerTrigger","direction":"sideways","schedule":"* * * * * *"}]}`},
			file:  "9lives/function.json",
			want:  []string{`function name "9lives" is invalid`, `direction "sideways"`},
		},
		{
			name:  "local settings not strings",
			files: map[string]string{"host.json": hostJSONBasic, "local.settings.json": `{"IsEncrypted":false,"Values":{"N":5}}`},
			file:  "local.settings.json",
			want:  []string{"Values.N must be a string"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := writeApp(t, tt.files)
			_, err := LoadApp(root, map[string]string{"ServiceBusConnection": "x"}, true)
			if err == nil {
				t.Fatal("LoadApp succeeded, want an error")
			}
			msg := err.Error()
			if tt.file != "" && !strings.Contains(msg, filepath.Join(root, filepath.FromSlash(tt.file))) {
				t.Errorf("error does not name %s:\n%s", tt.file, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestLoadAppResolves(t *testing.T) {
	t.Setenv("LOCALHOST_TEST_FROM_ENV", "env-wins")
	root := writeApp(t, map[string]string{
		"host.json": `{
		  "Version": "2.0",
		  "functionTimeout": "00:02:30",
		  "extensions": {"http": {"routePrefix": ""}, "serviceBus": {"maxConcurrentCalls": 4}},
		  "retry": {"strategy": "fixedDelay", "maxRetryCount": 2, "delayInterval": "00:00:05"},
		  "CustomHandler": {"Description": {"DefaultExecutablePath": "bin/handler", "workingDirectory": "bin",
		     "arguments": ["--a", "%LOCALHOST_TEST_FROM_ENV%"]},
		     "enableForwardingHttpRequest": true}
		}`,
		"bin/handler": "#!/bin/sh\n",
		"local.settings.json": `{"IsEncrypted": false, "Values": {"Sched": "0 0 9 * * Mon-Fri",
			"LOCALHOST_TEST_FROM_ENV": "file-loses", "Overridden": "file", "WorkQueue": "work-items"}}`,
		"Timer/function.json": `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"%Sched%","useMonitor":false,"runOnStartup":true}]}`,
		"Http/function.json":  `{"bindings":[{"name":"req","type":"HTTPTRIGGER","direction":"in","methods":["get","Post"]},{"name":"res","type":"http","direction":"out"}]}`,
		"Queue/function.json": `{"bindings":[{"name":"m","type":"serviceBusTrigger","direction":"in","queueName":"%WorkQueue%","connection":"ServiceBusConnection","isSessionsEnabled":true},
			{"name":"$return","type":"serviceBus","direction":"out","queueName":"done","connection":"ServiceBusConnection"}]}`,
		"NotAFunction/readme.txt": "ignored",
	})
	app, err := LoadApp(root, map[string]string{"Overridden": "option", "ServiceBusConnection": "x"}, true)
	if err != nil {
		t.Fatal(err)
	}
	h := app.Host
	if want := filepath.Join(root, "bin", "handler"); h.Handler.Executable != want {
		t.Errorf("Executable = %q, want %q", h.Handler.Executable, want)
	}
	if want := filepath.Join(root, "bin"); h.Handler.WorkingDirectory != want {
		t.Errorf("WorkingDirectory = %q, want %q", h.Handler.WorkingDirectory, want)
	}
	if h.FunctionTimeout != 150*time.Second || h.RoutePrefix != "" || h.MaxConcurrentCalls != 4 || !h.EnableForwardingHTTPRequest {
		t.Errorf("host config = %+v", h)
	}
	if got := app.Settings["Overridden"]; got != "option" {
		t.Errorf("Overridden = %q, want option", got)
	}
	if _, ok := app.Settings["LOCALHOST_TEST_FROM_ENV"]; ok {
		t.Errorf("a local.settings.json value replaced an environment variable")
	}
	if names := []string{app.Functions[0].Name, app.Functions[1].Name, app.Functions[2].Name}; !slices.Equal(names, []string{"Http", "Queue", "Timer"}) || len(app.Functions) != 3 {
		t.Errorf("functions = %v", names)
	}
	tm := app.Function("timer")
	if tm.Trigger.Schedule != "0 0 9 * * Mon-Fri" || tm.Trigger.UseMonitor || !tm.Trigger.RunOnStartup {
		t.Errorf("timer trigger = %+v", tm.Trigger)
	}
	if tm.Retry == nil || tm.Retry.MaxRetryCount != 2 || tm.Retry.DelayInterval != 5*time.Second {
		t.Errorf("timer retry (from host.json) = %+v", tm.Retry)
	}
	ht := app.Function("Http")
	if ht.Trigger.Type != TypeHTTPTrigger || ht.Trigger.AuthLevel != AuthFunction || !slices.Equal(ht.Trigger.Methods, []string{"GET", "POST"}) || !ht.forwardable() {
		t.Errorf("http trigger = %+v", ht.Trigger)
	}
	q := app.Function("Queue")
	if q.Trigger.QueueName != "work-items" || !q.Trigger.IsSessionsEnabled || q.Retry != nil || q.forwardable() {
		t.Errorf("queue function = %+v / %+v", q, q.Trigger)
	}
}

func TestLoadAppTimeZoneAndUnboundedTimeout(t *testing.T) {
	t.Parallel()
	root := writeApp(t, map[string]string{
		"host.json":           `{"version":"2.0","functionTimeout":"-1","customHandler":{"description":{"defaultExecutablePath":"{{HANDLER}}"}}}`,
		"T/function.json":     `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"0 30 9 * * *"}]}`,
		"local.settings.json": `{"Values":{"WEBSITE_TIME_ZONE":"Europe/Berlin"}}`,
	})
	app, err := LoadApp(root, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if app.Host.FunctionTimeout != 0 {
		t.Errorf("FunctionTimeout = %s, want 0 (unbounded)", app.Host.FunctionTimeout)
	}
	if app.Location.String() != "Europe/Berlin" {
		t.Fatalf("Location = %s", app.Location)
	}
	next := app.Function("T").schedule.Next(time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2025, 1, 16, 8, 30, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next = %s, want %s (09:30 Berlin)", next.UTC(), want)
	}

	_, err = LoadApp(root, map[string]string{"WEBSITE_TIME_ZONE": "Mars/Olympus"}, true)
	if err == nil || !strings.Contains(err.Error(), "WEBSITE_TIME_ZONE") {
		t.Errorf("bad time zone error = %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	settings := map[string]string{"MODE": "fast", "SPACED": "a b"}
	lookup := func(k string) (string, bool) { v, ok := settings[k]; return v, ok }
	ctxEnv := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4711"}
	tests := []struct {
		name string
		hd   HandlerDescription
		want []string
	}{
		{"none", HandlerDescription{}, nil},
		{"settings and context vars", HandlerDescription{Arguments: []string{"--mode=%MODE%", "--port", "%FUNCTIONS_CUSTOMHANDLER_PORT%"}}, []string{"--mode=fast", "--port", "4711"}},
		{"unset variables are removed", HandlerDescription{Arguments: []string{"--x=%NOT_SET_ANYWHERE%", "%ALSO_NOT_SET%", "y"}}, []string{"--x=", "y"}},
		{"worker path is quoted", HandlerDescription{Arguments: []string{"run"}, DefaultWorkerPath: "/app/my worker.js", WorkerArguments: []string{"--w"}}, []string{"run", "/app/my worker.js", "--w"}},
		{"arguments are re-split like .NET", HandlerDescription{Arguments: []string{"%SPACED%", `"quoted arg"`, `back\\"slash`}}, []string{"a", "b", "quoted arg", `back\slash`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.hd.Executable = "/bin/h"
			exe, args := commandLine(tt.hd, lookup, ctxEnv)
			if exe != "/bin/h" || !slices.Equal(args, tt.want) {
				t.Errorf("commandLine = %q %q, want %q", exe, args, tt.want)
			}
		})
	}
}

func TestParseTimeSpan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"00:10:00", 10 * time.Minute, false},
		{"01:02", time.Hour + 2*time.Minute, false},
		{"1.02:03:04", 26*time.Hour + 3*time.Minute + 4*time.Second, false},
		{"00:00:00.5", 500 * time.Millisecond, false},
		{"00:00:01.0000001", time.Second + 100, false},
		{"10", 10 * 24 * time.Hour, false},
		{"-1", -24 * time.Hour, false},
		{"24:00:00", 0, true},
		{"00:60:00", 0, true},
		{"five", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseTimeSpan(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("parseTimeSpan(%q) = %s, %v; want %s (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
	if s := formatTimeSpan(26*time.Hour + 3*time.Minute + 4*time.Second + 500*time.Millisecond); s != "1.02:03:04.5000000" {
		t.Errorf("formatTimeSpan = %s", s)
	}
}

func TestRouteMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		route  string
		path   string
		params map[string]string // nil: no match
	}{
		{"orders/{id?}", "orders", map[string]string{}},
		{"orders/{id?}", "ORDERS/5", map[string]string{"id": "5"}},
		{"orders/{id:int}", "orders/abc", nil},
		{"orders/{id:int}", "orders/42", map[string]string{"id": "42"}},
		{"orders/{id:guid}/items/{n:range(1,3)}", "orders/6f1c9d5e-8d5b-4a8c-9a7e-0b1f2c3d4e5f/items/2", map[string]string{"id": "6f1c9d5e-8d5b-4a8c-9a7e-0b1f2c3d4e5f", "n": "2"}},
		{"orders/{id:guid}/items/{n:range(1,3)}", "orders/6f1c9d5e-8d5b-4a8c-9a7e-0b1f2c3d4e5f/items/4", nil},
		{"files/{*path}", "files/a/b/c.txt", map[string]string{"path": "a/b/c.txt"}},
		{"page/{n=1}", "page", map[string]string{"n": "1"}},
		{"exact", "exact/more", nil},
		{"Hello", "hello", map[string]string{}},
	}
	for _, tt := range tests {
		rt, err := parseRoute(tt.route)
		if err != nil {
			t.Fatalf("parseRoute(%q): %v", tt.route, err)
		}
		var parts []string
		if tt.path != "" {
			parts = strings.Split(tt.path, "/")
		}
		got, ok := rt.match(parts)
		if ok != (tt.params != nil) || (ok && !equalMaps(got, tt.params)) {
			t.Errorf("route %q path %q = %v, %v; want %v", tt.route, tt.path, got, ok, tt.params)
		}
	}
	for _, bad := range []string{"a/{b}{c}", "a/{*rest}/b", "a/{x?}/b", "a/{x:nosuch}", "a//b", "a/{x}/{x}"} {
		if _, err := parseRoute(bad); err == nil {
			t.Errorf("parseRoute(%q) succeeded, want an error", bad)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestLocalSettingsEncrypted(t *testing.T) {
	t.Parallel()
	root := writeApp(t, map[string]string{"host.json": hostJSONBasic, "local.settings.json": `{"IsEncrypted": true, "Values": {}}`})
	if _, err := LoadApp(root, nil, true); err == nil || !strings.Contains(err.Error(), "IsEncrypted") {
		t.Errorf("err = %v", err)
	}
	if _, err := LoadApp(root, nil, false); err != nil {
		t.Errorf("with local settings ignored: %v", err)
	}
	_ = os.Remove(filepath.Join(root, "local.settings.json"))
}
