// Command handler is the custom handler the localhost tests launch as a real
// process. It records every request it receives on stdout as one line
// ("RECV {json}" for payload-mode invocations, "FWD {json}" for forwarded
// HTTP requests) and behaves according to the function name and, for queue
// triggers, the message body:
//
//	fail            answer 500
//	ok              answer 200 with {}
//	slow-once       on DeliveryCount 1 sleep 60 s (to be killed), else ok
//	hang-once       on DeliveryCount 1 sleep 60 s (function timeout), else ok
//	badjson         answer 200 with a text/plain body
//	empty           answer 200 with an empty JSON body
//	out:<n>         set Outputs.outq to a JSON array and an unknown output key
//	sleep:<ms>      sleep, then ok
//
// HANDLER_MODE=never-listen never opens the port; HANDLER_MODE=exit0 exits
// with code 0 shortly after it became ready.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	port := os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT")
	cwd, _ := os.Getwd()
	fmt.Printf("START pid=%d port=%s legacy_port=%s worker=%s legacy_worker=%s root=%s runtime=%s args=%s setting=%s cwd=%s\n",
		os.Getpid(), port, os.Getenv("FUNCTIONS_HTTPWORKER_PORT"), os.Getenv("FUNCTIONS_CUSTOMHANDLER_WORKER_ID"),
		os.Getenv("FUNCTIONS_HTTPWORKER_ID"), os.Getenv("FUNCTIONS_APP_ROOT_PATH"), os.Getenv("FUNCTIONS_WORKER_RUNTIME"),
		strings.Join(os.Args[1:], ","), os.Getenv("TEST_SETTING"), cwd)
	fmt.Fprintln(os.Stderr, "a warning line from the handler")
	fmt.Fprintln(os.Stderr, "an error line from the handler")
	switch os.Getenv("HANDLER_MODE") {
	case "never-listen":
		time.Sleep(time.Hour)
		return
	case "exit0":
		go func() {
			time.Sleep(300 * time.Millisecond)
			os.Exit(0)
		}()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/api/", forwarded)
	mux.HandleFunc("POST /{fn}", invoke)
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(3)
	}
}

func record(kind string, v any) {
	b, _ := json.Marshal(v)
	fmt.Printf("%s %s\n", kind, b)
}

// unwrap decodes a double-encoded string value once more when possible.
func unwrap(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw)
	}
	var inner string
	if json.Unmarshal([]byte(s), &inner) == nil {
		return inner
	}
	return s
}

func invoke(w http.ResponseWriter, r *http.Request) {
	fn := r.PathValue("fn")
	body, _ := io.ReadAll(r.Body)
	var env struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	_ = json.Unmarshal(body, &env)
	record("RECV", map[string]any{
		"fn": fn, "pid": os.Getpid(), "id": r.Header.Get("X-Azure-Functions-InvocationId"),
		"hostVersion": r.Header.Get("X-Azure-Functions-HostVersion"), "ua": r.Header.Get("User-Agent"),
		"contentType": r.Header.Get("Content-Type"), "contentLength": r.ContentLength,
		"body": json.RawMessage(body),
	})
	ok := func(outputs map[string]any, logs ...string) {
		if outputs == nil {
			outputs = map[string]any{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Outputs": outputs, "Logs": logs, "ReturnValue": nil})
	}
	switch fn {
	case "Flaky", "FlakyShort":
		var rc struct{ RetryCount int }
		_ = json.Unmarshal(env.Metadata["RetryContext"], &rc)
		if rc.RetryCount < 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ok(nil, "flaky succeeded")
	case "Echo":
		var req map[string]any
		_ = json.Unmarshal(env.Data["req"], &req)
		b, _ := json.Marshal(req)
		ok(map[string]any{
			"res":  map[string]any{"statusCode": 201, "headers": map[string]string{"Content-Type": "application/json", "X-Echo": "yes"}, "body": string(b)},
			"outq": map[string]any{"echoed": true},
		}, "echo")
	case "Ret":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Outputs":{},"Logs":[],"ReturnValue":{"statusCode":404,"body":"nothing here"}}`)
	case "Work", "Sess", "Done", "Bin":
		msg := unwrap(env.Data["msg"])
		delivery, _ := strconv.Atoi(unwrap(env.Metadata["DeliveryCount"]))
		switch {
		case msg == "fail":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "deliberate failure")
		case msg == "slow-once" || msg == "hang-once":
			if delivery == 1 {
				time.Sleep(60 * time.Second)
			}
			ok(nil)
		case msg == "badjson":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "not json")
		case msg == "empty":
			w.Header().Set("Content-Type", "application/json")
		case strings.HasPrefix(msg, "out:"):
			ok(map[string]any{"outq": []any{"first " + msg[4:], map[string]any{"k": 1}}, "Outq": "typo"})
		case strings.HasPrefix(msg, "sleep:"):
			ms, _ := strconv.Atoi(msg[6:])
			time.Sleep(time.Duration(ms) * time.Millisecond)
			ok(nil)
		default:
			ok(nil, "processed "+msg)
		}
	default:
		ok(nil, "ran "+fn)
	}
}

func forwarded(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	record("FWD", map[string]any{
		"method": r.Method, "uri": r.RequestURI, "host": r.Host, "id": r.Header.Get("X-Azure-Functions-InvocationId"),
		"hostVersion": r.Header.Get("X-Azure-Functions-HostVersion"), "ua": r.Header.Get("User-Agent"),
		"custom": r.Header.Get("X-Custom"), "body": string(body), "contentLength": r.ContentLength,
	})
	switch r.URL.Query().Get("do") {
	case "redirect":
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
		return
	}
	status, _ := strconv.Atoi(r.URL.Query().Get("status"))
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("X-Handler", "forwarded")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "hello %s", r.URL.Query().Get("name"))
}
