// Package webhook delivers the vault's webhook events: a Deliverer takes
// due events from the outbox in PostgreSQL, POSTs each as signed JSON to the
// tenant's URL, records every attempt, and retries failures with
// exponential backoff and jitter until the retry window closes. Sign and
// Verify implement the Vault-Signature header (Stripe's scheme); merchants
// can copy Verify.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader names the header that carries a webhook's signature.
const SignatureHeader = "Vault-Signature"

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock.
const DefaultTolerance = 5 * time.Minute

// Sign returns the Vault-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 keyed with secret of "<t>.<body>">".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(signature(secret, ts, body))
}

// SignAll returns the Vault-Signature header value for body sent at t,
// with one v1 signature per secret in order: "t=…,v1=<new>,v1=<old>" during
// a secret rotation's overlap, as Stripe does. A receiver that verifies
// with either secret accepts it.
func SignAll(t time.Time, body []byte, secrets ...string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=" + ts)
	for _, s := range secrets {
		b.WriteString(",v1=" + hex.EncodeToString(signature(s, ts, body)))
	}
	return b.String()
}

func signature(secret, ts string, body []byte) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// The errors Verify returns.
var (
	ErrMalformedHeader = errors.New("webhook: malformed Vault-Signature header")
	ErrStaleTimestamp  = errors.New("webhook: Vault-Signature timestamp outside the tolerance")
	ErrNoValidSig      = errors.New("webhook: no v1 signature in Vault-Signature matches the body")
)

// Verify checks a Vault-Signature header against the raw request body and
// the endpoint's signing secret. It returns ErrMalformedHeader when the
// header has no single integer t= or no v1= entry, ErrStaleTimestamp when t
// is more than tolerance away from now (a replayed request), and
// ErrNoValidSig unless one of the v1 signatures matches (several may be
// present; the comparison is constant-time). It returns nil for a genuine,
// fresh request.
func Verify(header string, body []byte, secret string, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
			return ErrMalformedHeader
		case k == "t" && ts != "":
			return ErrMalformedHeader
		case k == "t":
			ts = v
		case k == "v1":
			if sig, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, sig)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformedHeader
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return ErrStaleTimestamp
	}
	want := signature(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrNoValidSig
}
