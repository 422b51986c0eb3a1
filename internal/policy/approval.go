package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ApprovalSecretSetting is the app setting that holds the approval link
// secret.
const ApprovalSecretSetting = "MDEFLOW_APPROVAL_SECRET"

// MinSecretLen is the shortest accepted approval secret, in bytes.
const MinSecretLen = 32

// Verdicts of an approval link.
const (
	VerdictApprove = "approve"
	VerdictDeny    = "deny"
)

// Errors of Verify. An invalid request id is a *mde.InvalidIDError.
var (
	ErrExpired      = errors.New("approval link expired")
	ErrBadSignature = errors.New("approval link signature is not valid")
	ErrBadVerdict   = errors.New("approval verdict must be approve or deny")
)

// expirySkew tolerates clock differences between the instance that signed
// a link and the one that verifies it.
const expirySkew = time.Minute

// Signer signs and verifies approve/deny links. The signature is
// HMAC-SHA256 over "v1|<requestId>|<verdict>|<exp>" (exp in Unix seconds),
// base64url without padding; the verdict is signed, so an approve link
// cannot be turned into a deny link or the reverse.
type Signer struct {
	keys [][]byte // keys[0] signs; every key verifies
	ttl  time.Duration
}

// NewSigner returns a signer whose links are valid for ttl. secret signs
// and verifies; previous secrets only verify (key rotation: put the new
// secret first and keep the old one until its links have expired). Every
// secret must be at least MinSecretLen bytes.
func NewSigner(secret []byte, ttl time.Duration, previous ...[]byte) (*Signer, error) {
	var errs []error
	if len(secret) < MinSecretLen {
		errs = append(errs, fmt.Errorf("%s must be at least %d bytes (it has %d)", ApprovalSecretSetting, MinSecretLen, len(secret)))
	}
	for i, p := range previous {
		if len(p) < MinSecretLen {
			errs = append(errs, fmt.Errorf("previous approval secret #%d must be at least %d bytes (it has %d)", i+1, MinSecretLen, len(p)))
		}
	}
	if ttl <= 0 {
		errs = append(errs, fmt.Errorf("approval link ttl must be positive (it is %s)", ttl))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("creating approval signer: %w", errors.Join(errs...))
	}
	s := &Signer{ttl: ttl}
	for _, k := range append([][]byte{secret}, previous...) {
		s.keys = append(s.keys, append([]byte(nil), k...)) // the caller may wipe its copy
	}
	return s, nil
}

// TTL is how long links stay valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Links returns the approve and deny links of an isolation request,
// {baseURL}/api/approvals/{requestId}?verdict=approve&exp=<unix>&sig=<sig>,
// valid until expiresAt (now + ttl, whole seconds).
func (s *Signer) Links(baseURL, requestID string, now time.Time) (approveURL, denyURL string, expiresAt time.Time, err error) {
	if err := ValidateRequestID(requestID); err != nil {
		return "", "", time.Time{}, fmt.Errorf("signing approval links: %w", err)
	}
	u, perr := url.Parse(baseURL)
	if perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", time.Time{}, fmt.Errorf("signing approval links: base URL %q must be an absolute http(s) URL without query, fragment or credentials", clip(baseURL, 128))
	}
	base := strings.TrimRight(u.String(), "/") + "/api/approvals/" + url.PathEscape(requestID)
	exp := now.Add(s.ttl).Unix()
	link := func(verdict string) string {
		return base + "?verdict=" + verdict + "&exp=" + strconv.FormatInt(exp, 10) + "&sig=" + s.sign(s.keys[0], requestID, verdict, exp)
	}
	return link(VerdictApprove), link(VerdictDeny), time.Unix(exp, 0).UTC(), nil
}

// Verify checks the parameters of an approval link at now: the verdict,
// the request id, the signature (against every key, in constant time), and
// then the expiry. It returns nil, ErrBadVerdict, ErrBadSignature,
// ErrExpired (wrapped) or a *mde.InvalidIDError.
func (s *Signer) Verify(requestID, verdict, exp, sig string, now time.Time) error {
	if verdict != VerdictApprove && verdict != VerdictDeny {
		return fmt.Errorf("verifying approval: %w", ErrBadVerdict)
	}
	if err := ValidateRequestID(requestID); err != nil {
		return fmt.Errorf("verifying approval: %w", err)
	}
	if len(exp) == 0 || len(exp) > 12 || strings.TrimLeft(exp, "0123456789") != "" {
		return fmt.Errorf("verifying approval: %w: malformed expiry", ErrBadSignature)
	}
	expUnix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || expUnix <= 0 {
		return fmt.Errorf("verifying approval: %w: malformed expiry", ErrBadSignature)
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("verifying approval: %w: malformed signature", ErrBadSignature)
	}
	valid := false
	for _, k := range s.keys {
		want := s.mac(k, requestID, verdict, expUnix)
		if hmac.Equal(got, want) {
			valid = true
		}
	}
	if !valid {
		return fmt.Errorf("verifying approval: %w", ErrBadSignature)
	}
	expiresAt := time.Unix(expUnix, 0)
	if !now.Before(expiresAt) {
		return fmt.Errorf("verifying approval: %w at %s", ErrExpired, expiresAt.UTC().Format(time.RFC3339))
	}
	if expiresAt.Sub(now) > s.ttl+expirySkew {
		// Signed by a key we hold but with a longer ttl than today's:
		// refuse rather than honour a link that outlives the policy.
		return fmt.Errorf("verifying approval: %w: expiry is beyond the configured ttl", ErrBadSignature)
	}
	return nil
}

func (s *Signer) mac(key []byte, requestID, verdict string, exp int64) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("v1|" + requestID + "|" + verdict + "|" + strconv.FormatInt(exp, 10)))
	return h.Sum(nil)
}

func (s *Signer) sign(key []byte, requestID, verdict string, exp int64) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(key, requestID, verdict, exp))
}
