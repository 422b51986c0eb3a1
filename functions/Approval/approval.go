// Package approval is the Approval function (HTTP GET/POST
// /api/approvals/{requestId}, authLevel anonymous: the HMAC-signed, expiring
// link is the credential).
//
// GET only shows a confirmation page and never acts: mail scanners (Safe
// Links and the like) open every link in a message, and must not approve an
// isolation. The page's button POSTs the same signed parameters, and only a
// POST approves or denies.
package approval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	followaction "github.com/mdeflow/mdeflow/functions/FollowAction"
	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "Approval"

// Verifier checks a signed approval link.
type Verifier interface {
	Verify(requestID, verdict, exp, sig string, now time.Time) error
}

// Function is Approval.
type Function struct {
	Verifier Verifier
	Store    store.Backend
	Queue    queue.Sender
	Now      func() time.Time
	Logger   *slog.Logger
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>mdeflow approval</title></head><body style="font-family:sans-serif;max-width:40em">
<h1>{{.Heading}}</h1>
{{if .Machine}}<p>Machine: <b>{{.Machine}}</b>{{if .OS}} ({{.OS}}){{end}}{{if .Group}}, device group {{.Group}}{{end}}</p>{{end}}
{{if .Alert}}<p>Alert: {{.Alert}}</p>{{end}}
{{if .Rule}}<p>Rule: {{.Rule}}</p>{{end}}
<p>{{.Message}}</p>
{{if .Form}}<form method="post" action="{{.Action}}">
<input type="hidden" name="verdict" value="{{.Verdict}}">
<input type="hidden" name="exp" value="{{.Exp}}">
<input type="hidden" name="sig" value="{{.Sig}}">
<button type="submit">{{.Button}}</button>
</form>{{end}}
</body></html>`))

type pageData struct {
	Heading, Machine, OS, Group, Alert, Rule, Message string
	Form                                              bool
	Action, Verdict, Exp, Sig, Button                 string
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	req, err := inv.HTTP("req")
	if err != nil {
		return wire.Result{}, fmt.Errorf("decoding http trigger: %w", err)
	}
	requestID := req.Params["requestId"]
	params := url.Values{}
	for k, v := range req.Query {
		params.Set(k, v)
	}
	if req.Method == http.MethodPost && req.HasBody {
		form, err := url.ParseQuery(string(req.Body))
		if err != nil {
			return html(http.StatusBadRequest, pageData{Heading: "Bad request", Message: "The form could not be read."}), nil
		}
		for k, v := range form {
			params.Set(k, v[0])
		}
	}
	verdict, exp, sig := params.Get("verdict"), params.Get("exp"), params.Get("sig")
	now := f.Now().UTC()
	if err := f.Verifier.Verify(requestID, verdict, exp, sig, now); err != nil {
		f.Logger.Warn("approval link refused", fn.KeyReason, err.Error())
		return html(http.StatusForbidden, pageData{Heading: "Link refused",
			Message: "This approval link is invalid or has expired. Nothing was changed."}), nil
	}
	s := isolatemachine.States{Store: f.Store}
	st, etag, ok, err := s.Load(ctx, requestID)
	if err != nil {
		return wire.Result{}, err
	}
	if !ok {
		return html(http.StatusNotFound, pageData{Heading: "Unknown request", Message: "No isolation request has this id."}), nil
	}
	data := describe(st)
	if st.State != isolatemachine.StateApprovalPending || st.Request.Approved {
		data.Heading = "Already decided"
		data.Message = "This request is no longer waiting for approval"
		if st.Outcome != nil {
			data.Message += " (" + st.Outcome.Kind + ")"
		}
		data.Message += ". Nothing was changed."
		return html(http.StatusConflict, data), nil
	}
	if req.Method != http.MethodPost {
		data.Heading = "Confirm: " + verdict + " isolation"
		data.Message = "Press the button to " + verdict + " the isolation of this machine."
		data.Form, data.Verdict, data.Exp, data.Sig = true, verdict, exp, sig
		data.Action = "?" // same path
		data.Button = map[string]string{"approve": "Approve isolation", "deny": "Deny isolation"}[verdict]
		return html(http.StatusOK, data), nil
	}
	by := "approval link"
	if verdict == "approve" {
		st.Request.Approved = true
		st.Request.Requestor = by
		if _, err := s.Save(ctx, &st, etag, false); errors.Is(err, store.ErrConflict) {
			return html(http.StatusConflict, pageData{Heading: "Changed meanwhile", Message: "The request changed while you decided; reload the link."}), nil
		} else if err != nil {
			return wire.Result{}, err
		}
		if err := followaction.Approve(ctx, f.Queue, st.Request); err != nil {
			return wire.Result{}, err
		}
		f.Logger.Info("isolation approved", fn.KeyRequestID, requestID)
		data.Heading, data.Message = "Approved", "The isolation was approved and is being carried out. The team will be notified of the outcome."
		return html(http.StatusOK, data), nil
	}
	out := pipeline.Outcome{Kind: pipeline.OutcomeDenied, Reason: "an approver denied the isolation", At: now}
	if err := s.Finish(ctx, f.Queue, &st, etag, out); errors.Is(err, store.ErrConflict) {
		return html(http.StatusConflict, pageData{Heading: "Changed meanwhile", Message: "The request changed while you decided; reload the link."}), nil
	} else if err != nil {
		return wire.Result{}, err
	}
	f.Logger.Info("isolation denied", fn.KeyRequestID, requestID)
	data.Heading, data.Message = "Denied", "The isolation was denied. The machine stays connected."
	return html(http.StatusOK, data), nil
}

func describe(st isolatemachine.RequestState) pageData {
	d := pageData{Rule: st.Request.Decision.RuleID}
	if st.Machine != nil {
		d.Machine, d.OS, d.Group = st.Machine.ComputerDNSName, st.Machine.OSPlatform, st.Machine.RbacGroupName
	} else {
		d.Machine = st.Request.MachineID
	}
	if st.Request.Alert != nil {
		d.Alert = st.Request.Alert.Severity + ": " + st.Request.Alert.Title
	}
	return d
}

func html(status int, d pageData) wire.Result {
	var b bytes.Buffer
	if err := page.Execute(&b, d); err != nil {
		b.Reset()
		b.WriteString("internal error")
	}
	return wire.HTTPResponse("res", status, map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	}, b.String())
}
