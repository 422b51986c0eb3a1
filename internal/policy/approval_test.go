package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef")
	secretB = []byte("fedcba9876543210fedcba9876543210-b")
)

func newSigner(t *testing.T, ttl time.Duration, secret []byte, previous ...[]byte) *Signer {
	t.Helper()
	s, err := NewSigner(secret, ttl, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// linkParams splits a link into what the approval endpoint receives.
func linkParams(t *testing.T, link string) (requestID, verdict, exp, sig string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := strings.CutPrefix(u.EscapedPath(), "/api/approvals/")
	if !ok {
		t.Fatalf("link path %q", u.EscapedPath())
	}
	id, err = url.PathUnescape(id)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	return id, q.Get("verdict"), q.Get("exp"), q.Get("sig")
}

func TestSignerLinksFormat(t *testing.T) {
	t.Parallel()
	s := newSigner(t, 2*time.Hour, secretA)
	now := time.Date(2025, 3, 1, 9, 15, 30, 500, time.UTC)
	approve, deny, expiresAt, err := s.Links("https://mdeflow.azurewebsites.net/", "iso-da1_2", now)
	if err != nil {
		t.Fatal(err)
	}
	exp := now.Add(2 * time.Hour).Unix()
	if !expiresAt.Equal(time.Unix(exp, 0)) {
		t.Errorf("expiresAt = %v", expiresAt)
	}
	// Independent computation of the documented signature.
	sig := func(verdict string) string {
		h := hmac.New(sha256.New, secretA)
		h.Write([]byte("v1|iso-da1_2|" + verdict + "|" + strconv.FormatInt(exp, 10)))
		return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	}
	e := strconv.FormatInt(exp, 10)
	if want := "https://mdeflow.azurewebsites.net/api/approvals/iso-da1_2?verdict=approve&exp=" + e + "&sig=" + sig("approve"); approve != want {
		t.Errorf("approve link\n got %s\nwant %s", approve, want)
	}
	if want := "https://mdeflow.azurewebsites.net/api/approvals/iso-da1_2?verdict=deny&exp=" + e + "&sig=" + sig("deny"); deny != want {
		t.Errorf("deny link\n got %s\nwant %s", deny, want)
	}
	// A base URL with a path prefix keeps it.
	approve, _, _, err = s.Links("http://localhost:7071/fn", "iso-1", now)
	if err != nil || !strings.HasPrefix(approve, "http://localhost:7071/fn/api/approvals/iso-1?verdict=approve&exp=") {
		t.Errorf("link with prefix = %q, %v", approve, err)
	}
}

func TestSignerVerify(t *testing.T) {
	t.Parallel()
	const ttl = time.Hour
	s := newSigner(t, ttl, secretA)
	approve, deny, expiresAt, err := s.Links("https://fn.example.com", "iso-da638765432109876543_-1029384756", testNow)
	if err != nil {
		t.Fatal(err)
	}
	id, verdict, exp, sig := linkParams(t, approve)
	_, dVerdict, dExp, dSig := linkParams(t, deny)
	flip := func(s string) string { // change the first character
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name                  string
		id, verdict, exp, sig string
		now                   time.Time
		want                  error // nil = valid
		wantInvalidID         bool
	}{
		{"approve link", id, verdict, exp, sig, testNow, nil, false},
		{"deny link", id, dVerdict, dExp, dSig, testNow.Add(59 * time.Minute), nil, false},
		{"verdict swapped to deny", id, VerdictDeny, exp, sig, testNow, ErrBadSignature, false},
		{"verdict swapped to approve", id, VerdictApprove, dExp, dSig, testNow, ErrBadSignature, false},
		{"unknown verdict", id, "maybe", exp, sig, testNow, ErrBadVerdict, false},
		{"verdict case", id, "Approve", exp, sig, testNow, ErrBadVerdict, false},
		{"empty verdict", id, "", exp, sig, testNow, ErrBadVerdict, false},
		{"tampered signature", id, verdict, exp, flip(sig), testNow, ErrBadSignature, false},
		{"signature of another request", "iso-other", verdict, exp, sig, testNow, ErrBadSignature, false},
		{"extended expiry", id, verdict, strconv.FormatInt(expiresAt.Unix()+3600, 10), sig, testNow, ErrBadSignature, false},
		{"padded signature", id, verdict, exp, sig + "=", testNow, ErrBadSignature, false},
		{"character outside base64url", id, verdict, exp, sig[:len(sig)-1] + "+", testNow, ErrBadSignature, false},
		{"short signature", id, verdict, exp, sig[:20], testNow, ErrBadSignature, false},
		{"empty signature", id, verdict, exp, "", testNow, ErrBadSignature, false},
		{"malformed expiry", id, verdict, "soon", sig, testNow, ErrBadSignature, false},
		{"negative expiry", id, verdict, "-1", sig, testNow, ErrBadSignature, false},
		{"signed expiry with plus", id, verdict, "+" + exp, sig, testNow, ErrBadSignature, false},
		{"expired exactly at exp", id, verdict, exp, sig, expiresAt, ErrExpired, false},
		{"expired later", id, verdict, exp, sig, expiresAt.Add(time.Hour), ErrExpired, false},
		{"expired and tampered: signature first", id, verdict, exp, flip(sig), expiresAt.Add(time.Hour), ErrBadSignature, false},
		{"unsafe request id", "iso/../../admin", verdict, exp, sig, testNow, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := s.Verify(tc.id, tc.verdict, tc.exp, tc.sig, tc.now)
			switch {
			case tc.wantInvalidID:
				var ie *mde.InvalidIDError
				if !errors.As(err, &ie) {
					t.Errorf("Verify = %v, want *mde.InvalidIDError", err)
				}
			case tc.want == nil:
				if err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
			default:
				if !errors.Is(err, tc.want) {
					t.Errorf("Verify = %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestSignerKeyRotation(t *testing.T) {
	t.Parallel()
	old := newSigner(t, time.Hour, secretA)
	rotated := newSigner(t, time.Hour, secretB, secretA)
	approve, _, _, err := old.Links("https://fn.example.com", "iso-1", testNow)
	if err != nil {
		t.Fatal(err)
	}
	id, v, exp, sig := linkParams(t, approve)
	if err := rotated.Verify(id, v, exp, sig, testNow.Add(time.Minute)); err != nil {
		t.Errorf("link signed with the previous secret: %v", err)
	}
	approve, _, _, _ = rotated.Links("https://fn.example.com", "iso-2", testNow)
	id, v, exp, sig = linkParams(t, approve)
	if err := rotated.Verify(id, v, exp, sig, testNow); err != nil {
		t.Errorf("link signed with the new secret: %v", err)
	}
	if err := old.Verify(id, v, exp, sig, testNow); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old signer verified a link of the new secret: %v", err)
	}
}

func TestNewSignerErrors(t *testing.T) {
	t.Parallel()
	short := []byte("short-secret-value")
	_, err := NewSigner(short, time.Hour)
	if err == nil || !strings.Contains(err.Error(), ApprovalSecretSetting) || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Errorf("short secret: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), string(short)) {
		t.Error("the error message leaks the secret")
	}
	if _, err := NewSigner(secretA, time.Hour, secretB, short); err == nil || !strings.Contains(err.Error(), "previous approval secret #2") {
		t.Errorf("short previous secret: %v", err)
	}
	if _, err := NewSigner(secretA, 0); err == nil || !strings.Contains(err.Error(), "ttl must be positive") {
		t.Errorf("zero ttl: %v", err)
	}
	// The signer keeps its own copy of the secret.
	buf := append([]byte(nil), secretA...)
	s := newSigner(t, time.Hour, buf)
	approve, _, _, _ := s.Links("https://x.example", "iso-1", testNow)
	for i := range buf {
		buf[i] = 0
	}
	id, v, exp, sig := linkParams(t, approve)
	if err := s.Verify(id, v, exp, sig, testNow); err != nil {
		t.Errorf("wiping the caller's buffer broke the signer: %v", err)
	}
	if s.TTL() != time.Hour {
		t.Errorf("TTL = %v", s.TTL())
	}
}

func TestSignerLinksErrors(t *testing.T) {
	t.Parallel()
	s := newSigner(t, time.Hour, secretA)
	for _, c := range []struct{ base, id string }{
		{"", "iso-1"},
		{"fn.example.com", "iso-1"},
		{"ftp://fn.example.com", "iso-1"},
		{"https://fn.example.com/?x=1", "iso-1"},
		{"https://fn.example.com/#frag", "iso-1"},
		{"https://user:pw@fn.example.com", "iso-1"},
		{"https://fn.example.com", "iso/../x"},
		{"https://fn.example.com", ""},
	} {
		if a, d, _, err := s.Links(c.base, c.id, testNow); err == nil {
			t.Errorf("Links(%q, %q) = %q, %q; want an error", c.base, c.id, a, d)
		}
	}
}
