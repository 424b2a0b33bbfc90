//go:build linux

package main

// Forwarding between real processes: a vault forwards a card to a second
// cardvault process over loopback TLS (the own-vault preset, vault to
// vault), and a vault killed while a forward waits for its destination
// leaves a pending record that the restarted vault's sweeper finishes.

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/vault"
)

// TestForwardingBetweenProcesses builds cardvault once and runs the
// forwarding tests that need more than one process.
func TestForwardingBetweenProcesses(t *testing.T) {
	bin := buildVault(t)
	t.Run("a card forwarded to a second vault process detokenizes there", func(t *testing.T) { forwardToSecondVault(t, bin) })
	t.Run("a forward cut by a crash is finished by the sweeper", func(t *testing.T) { crashMidForward(t, bin) })
}

// forwardRecord is the part of a forwarding.request the tests read.
type forwardRecord struct {
	ID              string  `json:"id"`
	Status          string  `json:"status"`
	FailureCode     *string `json:"failure_code"`
	FailureMessage  *string `json:"failure_message"`
	ResponseDetails *struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	} `json:"response_details"`
	RequestDetails struct {
		Body string `json:"body"`
	} `json:"request_details"`
}

// forwardJSON is a forward of pm's card to url with Stripe's own-vault
// body, the four card replacements and the destination's API key.
func forwardJSON(pm, url, destKey string) []byte {
	return fmt.Appendf(nil, `{"payment_method":%q,"url":%q,`+
		`"replacements":["card_number","card_expiry","card_cvc","cardholder_name"],`+
		`"request":{"body":"{\"metadata\":{\"business_key\":\"copied\"},\"card\":{\"number\":\"\",\"exp_month\":\"\",\"exp_year\":\"\",\"cvc\":\"\",\"name\":\"\"}}",`+
		`"headers":[{"name":"X-API-Key","value":%q}]}}`, pm, url, destKey)
}

// startVaultWith runs bin serve with env and the extra process
// environment extra (SSL_CERT_FILE), serving HTTPS trusted through
// tlsRoot when it is set.
func startVaultWith(t *testing.T, bin, tlsRoot string, extra, env []string) *e2e.Vault {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = extra
	v, err := e2e.StartVault(context.Background(), e2e.VaultOptions{Command: cmd, Env: env, TLSRootFile: tlsRoot,
		LogPath: filepath.Join(t.TempDir(), "vault.log"), StopGrace: shutdownGrace})
	if v != nil {
		t.Cleanup(v.Kill)
	}
	require.NoError(t, err)
	return v
}

// forwardToSecondVault: vault A forwards a stored card with the
// stripe_own_vault preset to vault B, another cardvault process serving
// HTTPS on loopback; B stores it (201) and detokenizing B's token gives the
// card A holds, CVC included.
func forwardToSecondVault(t *testing.T, bin string) {
	ctx := context.Background()
	dir := t.TempDir()
	certFile, keyFile, err := e2e.LoopbackTLSFiles(dir, "peer")
	require.NoError(t, err)
	peerSetup := newChildSetup(t, bin)
	peer := startVaultWith(t, bin, certFile, nil,
		append(peerSetup.env, "VAULT_TLS_CERT="+certFile, "VAULT_TLS_KEY="+keyFile))
	s := newChildSetup(t, bin)
	sender := startVaultWith(t, bin, "", []string{"SSL_CERT_FILE=" + certFile},
		append(s.env, "VAULT_EGRESS_ALLOW_LOOPBACK=true"))

	a := e2e.NewClient(sender.URL(), s.key, 2, 30*time.Second)
	t.Cleanup(a.Close)
	number := e2e.CardNumber(7)
	_, err = a.Call(ctx, http.MethodPost, "/tokens", e2e.ForwardBody("pm_to_peer", number), http.StatusCreated)
	require.NoError(t, err)
	endpoint := peer.URL() + "/cde-import"
	_, err = a.Call(ctx, http.MethodPost, "/forwarding/destinations",
		fmt.Appendf(nil, `{"url":%q,"preset":"stripe_own_vault"}`, endpoint), http.StatusCreated)
	require.NoError(t, err)

	out, err := a.Call(ctx, http.MethodPost, "/v1/forwarding/requests", forwardJSON("pm_to_peer", endpoint, peerSetup.key), http.StatusOK)
	require.NoError(t, err)
	var rec forwardRecord
	require.NoError(t, json.Unmarshal(out, &rec))
	require.Equal(t, "succeeded", rec.Status, "%s", out)
	require.NotNil(t, rec.ResponseDetails)
	assert.Equal(t, http.StatusCreated, rec.ResponseDetails.Status, "the peer stored the card: %s", rec.ResponseDetails.Body)
	assert.NotContains(t, string(out), number, "the record holds the card redacted")

	// The peer's token is found by the business key the forwarded body
	// named: the answer in the record is redacted, and a digit run of the
	// token id equal to the CVC would read "***" there.
	b, err := e2e.NewTLSClient(peer.URL(), peerSetup.key, certFile, 2, 30*time.Second)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	listed, err := b.Call(ctx, http.MethodGet, "/tokens?business_key=copied", nil, http.StatusOK)
	require.NoError(t, err)
	var page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(listed, &page))
	require.Len(t, page.Data, 1, "the peer stored one card under the business key")
	peerToken := page.Data[0].ID
	revealed, err := b.Call(ctx, http.MethodPost, "/tokens/"+peerToken+"/detokenize", []byte(`{"reason":"e2e check"}`), http.StatusOK)
	require.NoError(t, err)
	var card struct {
		BusinessKey string `json:"business_key"`
		Card        struct {
			Number   string `json:"number"`
			ExpMonth int    `json:"exp_month"`
			ExpYear  int    `json:"exp_year"`
			Name     string `json:"name"`
			CVC      string `json:"cvc"`
		} `json:"card"`
	}
	require.NoError(t, json.Unmarshal(revealed, &card))
	assert.Equal(t, "copied", card.BusinessKey)
	assert.Equal(t, number, card.Card.Number)
	assert.Equal(t, 4, card.Card.ExpMonth)
	assert.Equal(t, 2033, card.Card.ExpYear)
	assert.Equal(t, "John Doe", card.Card.Name)
	assert.Equal(t, "123", card.Card.CVC, "the CVC went along once")
}

// holdingDestination is a loopback HTTPS destination that holds every
// request until the test ends, and says when one has arrived.
type holdingDestination struct {
	*httptest.Server
	arrived chan struct{}
	release chan struct{}
	mu      sync.Mutex
	count   int
}

func newHoldingDestination(t *testing.T) *holdingDestination {
	t.Helper()
	d := &holdingDestination{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	d.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.count++
		d.mu.Unlock()
		d.arrived <- struct{}{}
		select {
		case <-d.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(d.Close)
	t.Cleanup(func() { close(d.release) })
	return d
}

// requests returns how many requests have arrived.
func (d *holdingDestination) requests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.count
}

// crashMidForward: a vault is killed (SIGKILL) while a forward with an
// Idempotency-Key waits for a destination that holds it; its pending
// record stays pending, and a replay meanwhile says the outcome is unknown
// and sends nothing. The restarted vault's sweeper marks it failed
// (forwarding_api_upstream_connection_error, outcome unknown) once the
// destination's timeout and the grace have passed, with an audit row; GET
// shows that outcome, and replays of the key answer it, the same each
// time, without sending again.
func crashMidForward(t *testing.T, bin string) {
	ctx := context.Background()
	dest := newHoldingDestination(t)
	certFile := filepath.Join(t.TempDir(), "destination.pem")
	require.NoError(t, writeServerCert(certFile, dest.Server))
	s := newChildSetup(t, bin)
	env := append(s.env, "VAULT_EGRESS_ALLOW_LOOPBACK=true", "VAULT_FORWARD_PENDING_GRACE=30s")
	extra := []string{"SSL_CERT_FILE=" + certFile}
	first := startVaultWith(t, bin, "", extra, env)

	c := e2e.NewClient(first.URL(), s.key, 2, 30*time.Second)
	_, err := c.Call(ctx, http.MethodPost, "/tokens", e2e.ForwardBody("pm_crash", e2e.CardNumber(11)), http.StatusCreated)
	require.NoError(t, err)
	endpoint := dest.URL + "/cde-import"
	_, err = c.Call(ctx, http.MethodPost, "/forwarding/destinations",
		fmt.Appendf(nil, `{"url":%q,"preset":"stripe_own_vault","timeout_ms":3000}`, endpoint), http.StatusCreated)
	require.NoError(t, err)
	body := forwardJSON("pm_crash", endpoint, "dest_key")
	idem := http.Header{"Idempotency-Key": {"crash-forward-1"}}
	cut := make(chan error, 1)
	go func() {
		_, err := c.SendHeader(ctx, http.MethodPost, "/v1/forwarding/requests", body, idem)
		cut <- err
	}()
	select {
	case <-dest.arrived:
	case <-time.After(20 * time.Second):
		t.Fatalf("the forward never reached the destination; vault log: %s", first.LogTail(logTail))
	}
	require.NoError(t, first.Signal(syscall.SIGKILL))
	waitExit(t, first, 10*time.Second)
	assert.Error(t, <-cut, "the merchant got no answer: the vault died mid-forward")
	c.Close()

	var id, status string
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT id, status FROM forwarding_requests WHERE tenant_id = $1`, s.tenantID).Scan(&id, &status))
	assert.Equal(t, "pending", status, "the crash left the record pending")

	restarted := startVaultWith(t, bin, "", extra, env)
	r := e2e.NewClient(restarted.URL(), s.key, 2, 30*time.Second)
	t.Cleanup(r.Close)
	replay := func() e2e.Answer {
		a, err := r.SendHeader(ctx, http.MethodPost, "/v1/forwarding/requests", body, idem)
		require.NoError(t, err)
		return a
	}
	get := func() forwardRecord {
		out, err := r.Call(ctx, http.MethodGet, "/v1/forwarding/requests/"+id, nil, http.StatusOK)
		require.NoError(t, err)
		var rec forwardRecord
		require.NoError(t, json.Unmarshal(out, &rec))
		return rec
	}
	early := replay()
	_, code := early.APIError()
	assert.Contains(t, []string{vault.CodeIdempotencyKeyInUse, vault.CodeForwardUpstreamError, vault.CodeForwardConnectionError}, code,
		"a replay right after the restart waits for the dead process's hold on the key, or says the outcome is unknown: %s", early.Body)

	waitFor(t, 90*time.Second, "the sweeper to mark the record failed", func() bool { return get().Status == "failed" })
	rec := get()
	require.NotNil(t, rec.FailureCode)
	assert.Equal(t, vault.CodeForwardConnectionError, *rec.FailureCode)
	require.NotNil(t, rec.FailureMessage)
	assert.Contains(t, *rec.FailureMessage, "unknown")
	assert.Nil(t, rec.ResponseDetails)
	assert.Contains(t, rec.RequestDetails.Body, `"cvc":"***"`, "the redacted request is kept")

	// The dead process's hold on the key lapses after
	// vault.IdempotencyLockTimeout; until then a replay answers 409.
	var answered e2e.Answer
	waitFor(t, vault.IdempotencyLockTimeout+30*time.Second, "the dead process's hold on the Idempotency-Key to lapse", func() bool {
		answered = replay()
		_, code := answered.APIError()
		return code != vault.CodeIdempotencyKeyInUse
	})
	for _, a := range []e2e.Answer{answered, replay()} {
		_, code := a.APIError()
		assert.Equal(t, http.StatusBadGateway, a.Status, "%s", a.Body)
		assert.Equal(t, vault.CodeForwardConnectionError, code)
		assert.Contains(t, string(a.Body), "unknown")
		assert.Contains(t, string(a.Body), id)
	}
	assert.Equal(t, string(answered.Body), string(replay().Body), "every replay answers the same")
	assert.Equal(t, 1, dest.requests(), "the card went out once, before the crash")
	var audited int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = $2
		AND detail->>'forwarding_request' = $3 AND detail->>'destination_outcome' = 'unknown'`,
		s.tenantID, string(vault.ActionForwardingSweep), id).Scan(&audited))
	assert.Equal(t, 1, audited, "the sweep is audited once")
}

// writeServerCert writes srv's certificate, PEM, to path, for a child
// vault to trust through SSL_CERT_FILE.
func writeServerCert(path string, srv *httptest.Server) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
}
