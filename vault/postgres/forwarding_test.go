package postgres_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// ownVaultBody is the body Stripe's guide forwards to a merchant's own
// vault, with the card fields left blank.
const ownVaultBody = `{"metadata":{"business_key":"pm_fwd"},"card":{"number":"","exp_month":"","exp_year":"","cvc":"","name":""}}`

// allCardFields are the four card replacements.
var allCardFields = []string{"card_number", "card_expiry", "card_cvc", "cardholder_name"}

// recorder is a loopback TLS destination that keeps every body it gets and
// answers with answer (the body echoed when answer is nil).
type recorder struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newRecorder(t *testing.T, answer func(w http.ResponseWriter, body []byte)) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, string(b))
		rec.mu.Unlock()
		if answer == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
			return
		}
		answer(w, b)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// received returns the bodies received so far.
func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// forwardEnv is an env whose service forwards to loopback TLS destinations.
type forwardEnv struct {
	*env
}

func newForwardEnv(t *testing.T, servers ...*httptest.Server) *forwardEnv {
	t.Helper()
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: clock.Now, CVCTTL: time.Hour,
		Egress: vaulttest.LoopbackEgress(5*time.Second, servers...), AllowLoopback: true})
	_, secret := vaulttest.Tenant(t, svc)
	return &forwardEnv{&env{svc: svc, pool: vaulttest.Pool(t, dbURL), clock: clock, actor: vaulttest.Actor(t, svc, secret), secret: secret}}
}

// ownVaultDestination adds the stripe_own_vault preset at url.
func (e *forwardEnv) ownVaultDestination(t *testing.T, url string) vault.ForwardDestination {
	t.Helper()
	d, err := e.svc.CreateDestination(context.Background(), e.actor, vault.DestinationInput{URL: url, Preset: "stripe_own_vault"})
	require.NoError(t, err)
	return d
}

// forward forwards the token's card with the own-vault body to url.
func (e *forwardEnv) forward(t *testing.T, pm, url, idemKey string, replacements ...string) (vault.ForwardingRequest, error) {
	t.Helper()
	return e.svc.Forward(context.Background(), e.actor, vault.ForwardInput{PaymentMethod: pm, URL: url,
		Replacements: replacements, Body: ownVaultBody, IdempotencyKey: idemKey,
		Headers: []vault.ForwardHeader{{Name: "X-API-Key", Value: "dest_secret_key"}}})
}

func TestCreateDestinationChecksItsConfiguration(t *testing.T) {
	e := newForwardEnv(t)
	for _, tc := range []struct {
		name  string
		in    vault.DestinationInput
		param string // "" when accepted
	}{
		{"preset with the merchant's URL", vault.DestinationInput{URL: "https://pay.example.com/v70/payments", Preset: "adyen_payments"}, ""},
		{"preset with its own URL", vault.DestinationInput{Preset: "stripe_payment_methods"}, ""},
		{"custom, path strings", vault.DestinationInput{URL: "https://psp.example.com/charges/*",
			Config: json.RawMessage(`{"format":"json","fields":{"card_number":"pan","card_cvc":"cvv",` +
				`"card_expiry":[{"path":"exp.m","expiry":"MM"},{"path":"exp.y","expiry":"YY"}]}}`)}, ""},
		{"loopback over http (tests)", vault.DestinationInput{URL: "http://127.0.0.1:9/cde-import", Preset: "stripe_own_vault"}, ""},
		{"unknown preset", vault.DestinationInput{URL: "https://x.example.com/", Preset: "no_such"}, "preset"},
		{"preset with fields", vault.DestinationInput{URL: "https://x.example.com/", Preset: "adyen_payments",
			Config: json.RawMessage(`{"fields":{"card_number":"n"}}`)}, "preset"},
		{"http to a DNS name", vault.DestinationInput{URL: "http://psp.example.com/pay", Preset: "stripe_own_vault"}, "url"},
		{"IP literal", vault.DestinationInput{URL: "https://10.0.0.1/pay", Preset: "stripe_own_vault"}, "url"},
		{"no format", vault.DestinationInput{URL: "https://psp.example.com/pay", Config: json.RawMessage(`{"fields":{"card_number":"n"}}`)}, "format"},
		{"unknown setting", vault.DestinationInput{URL: "https://psp.example.com/pay", Config: json.RawMessage(`{"format":"json","colour":1}`)}, "fields"},
		{"signature key without a rule", vault.DestinationInput{URL: "https://psp.example.com/pay", Preset: "stripe_own_vault",
			SignatureSecret: card.NewSecret("k")}, "signature"},
		{"certificate without key", vault.DestinationInput{URL: "https://psp.example.com/pay", Preset: "stripe_own_vault",
			ClientCertificatePEM: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----"}, "client_certificate"},
		{"card number in the URL", vault.DestinationInput{URL: "https://psp.example.com/4242424242424242", Preset: "stripe_own_vault"}, "url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.svc.CreateDestination(context.Background(), e.actor, tc.in)
			if tc.param == "" {
				require.NoError(t, err)
				assert.Regexp(t, `^fwddst_[A-Z2-7]{26}$`, d.ID)
				got, err := e.svc.GetDestination(context.Background(), e.actor, d.ID)
				require.NoError(t, err)
				assert.Equal(t, d.URL, got.URL)
				return
			}
			require.Error(t, err)
			assert.Equal(t, vault.KindInvalid, vault.ErrorKind(err), "%v", err)
			assert.Equal(t, tc.param, vault.AsError(err).Param, "%v", err)
		})
	}
}

func TestForwardFillsTheCardAuditsFirstAndStoresItRedacted(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_fwd_1"))
	d := e.ownVaultDestination(t, dest.URL+"/cde-import")

	rec, err := e.forward(t, "pm_fwd_1", dest.URL+"/cde-import", "", allCardFields...)
	require.NoError(t, err)

	got := dest.received()
	require.Len(t, got, 1)
	assert.JSONEq(t, `{"metadata":{"business_key":"pm_fwd"},"card":{"number":"4242424242424242","exp_month":"04","exp_year":"2033","cvc":"123","name":"John Doe"}}`, got[0])
	assert.Regexp(t, `^fwdreq_[A-Z2-7]{26}$`, rec.ID)
	assert.Equal(t, vault.ForwardSucceeded, rec.Status)
	assert.Equal(t, d.ID, rec.DestinationID)
	assert.Equal(t, tok.ID, rec.TokenID)
	assert.Equal(t, "127.0.0.1", rec.DestinationIP)
	for _, details := range []string{rec.Request.Body, rec.Response.Body} {
		assert.Contains(t, details, `"424242******4242"`)
		assert.Contains(t, details, `"***"`)
		assert.NotContains(t, details, "4242424242424242")
		assert.NotContains(t, details, `"123"`)
	}
	assert.Contains(t, rec.Request.Headers, vault.ForwardHeader{Name: "X-Api-Key", Value: "[REDACTED]"})
	assert.Equal(t, http.StatusOK, rec.Response.Status)

	stored, err := e.svc.GetForwardingRequest(ctx, e.actor, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, rec.Request, stored.Request)
	assert.Equal(t, rec.Response, stored.Response)
	assert.Equal(t, []string{"token.create", "token.forward", "forwarding.request.read"}, e.auditActions(t, tok.ID))

	after, err := e.svc.GetToken(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	assert.False(t, after.CVCAvailable, "a forward with card_cvc uses the CVC up")

	_, err = e.forward(t, tok.ID.String(), dest.URL+"/cde-import", "", allCardFields...)
	require.NoError(t, err, "a later forward, named by token id, sends the CVC blank untouched")
	assert.Contains(t, dest.received()[1], `"cvc":""`)
}

func TestForwardRefusesWhatItMayNotSend(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	e.tokenize(t, visa("pm_refused"))
	e.ownVaultDestination(t, dest.URL+"/cde-import")
	other := e.otherActor(t)
	for _, tc := range []struct {
		name string
		a    vault.Actor
		pm   string
		url  string
		kind vault.Kind
		code string
	}{
		{"URL off the allow-list", e.actor, "pm_refused", dest.URL + "/elsewhere", vault.KindBadRequest, vault.CodeForwardInvalidParameter},
		{"URL with a query under another path", e.actor, "pm_refused", dest.URL + "/cde-import/x", vault.KindBadRequest, vault.CodeForwardInvalidParameter},
		{"unknown payment method", e.actor, "pm_nobody", dest.URL + "/cde-import", vault.KindNotFound, "resource_missing"},
		{"another tenant's token", other, "pm_refused", dest.URL + "/cde-import", vault.KindNotFound, "resource_missing"},
		{"card number as payment method", e.actor, "4242424242424242", dest.URL + "/cde-import", vault.KindBadRequest, "sensitive_data"},
		{"token id whose digits pass for a card number", e.actor, "42424242-4242-4242-4242-424242424242", dest.URL + "/cde-import", vault.KindNotFound, "resource_missing"},
		{"URL naming such an id", e.actor, "pm_refused", dest.URL + "/cde-import/42424242-4242-4242-4242-424242424242", vault.KindBadRequest, vault.CodeForwardInvalidParameter},
		{"card number in the URL", e.actor, "pm_refused", dest.URL + "/cde-import?pan=4242424242424242", vault.KindBadRequest, "sensitive_data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Forward(context.Background(), tc.a, vault.ForwardInput{PaymentMethod: tc.pm, URL: tc.url,
				Replacements: allCardFields, Body: ownVaultBody})
			require.Error(t, err)
			assert.Equal(t, tc.kind, vault.ErrorKind(err), "%v", err)
			assert.Equal(t, tc.code, vault.AsError(err).Code)
		})
	}
	assert.Empty(t, dest.received(), "nothing was sent")
	var denied int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events
		WHERE tenant_id = $1 AND action = 'token.forward' AND outcome = 'denied'`, e.actor.TenantID).Scan(&denied))
	assert.Equal(t, 3, denied, "each URL off the allow-list is audited")
}

func TestConcurrentForwardsSendTheCVCOnce(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	e.tokenize(t, visa("pm_cvc_once"))
	e.ownVaultDestination(t, dest.URL+"/cde-import")
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.forward(t, "pm_cvc_once", dest.URL+"/cde-import", "", allCardFields...)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	withCVC := 0
	for _, b := range dest.received() {
		if strings.Contains(b, `"cvc":"123"`) {
			withCVC++
		}
	}
	assert.Len(t, dest.received(), n)
	assert.Equal(t, 1, withCVC, "one forward of all those at once gets the CVC")
}

func TestForwardIdempotencyKeyMakesOneOutboundRequest(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	e.tokenize(t, visa("pm_idem"))
	e.ownVaultDestination(t, dest.URL+"/cde-import")
	first, err := e.forward(t, "pm_idem", dest.URL+"/cde-import", "key-1", allCardFields...)
	require.NoError(t, err)
	again, err := e.forward(t, "pm_idem", dest.URL+"/cde-import", "key-1", allCardFields...)
	require.NoError(t, err)
	assert.True(t, again.Replayed)
	assert.Equal(t, first.ID, again.ID)
	assert.Equal(t, first.Response, again.Response)
	assert.Len(t, dest.received(), 1, "the retry sent nothing")

	_, err = e.forward(t, "pm_idem", dest.URL+"/cde-import", "key-1", "card_number")
	assert.Equal(t, vault.KindIdempotency, vault.ErrorKind(err), "the key with another request")

	e.clock.Advance(vault.IdempotencyTTL + time.Second)
	later, err := e.forward(t, "pm_idem", dest.URL+"/cde-import", "key-1", allCardFields...)
	require.NoError(t, err)
	assert.NotEqual(t, first.ID, later.ID, "after 24 h the key is free again")
	assert.Len(t, dest.received(), 2)
}

func TestAnUnreachableDestinationIsRecordedAndNotRetriedUnderItsKey(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	e.tokenize(t, visa("pm_down"))
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	dest.Close() // nothing listens any more

	rec, err := e.forward(t, "pm_down", url, "key-down", allCardFields...)
	require.Error(t, err)
	assert.Equal(t, vault.KindUpstream, vault.ErrorKind(err))
	assert.Equal(t, vault.CodeForwardConnectionError, vault.AsError(err).Code)
	assert.Contains(t, vault.AsError(err).Message, rec.ID)
	stored, err := e.svc.GetForwardingRequest(context.Background(), e.actor, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, vault.ForwardFailed, stored.Status)
	assert.Equal(t, vault.CodeForwardConnectionError, stored.ErrorCode)
	assert.Nil(t, stored.Response)

	again, err := e.forward(t, "pm_down", url, "key-down", allCardFields...)
	assert.Equal(t, vault.CodeForwardConnectionError, vault.AsError(err).Code, "the retry replays the failure")
	assert.Equal(t, rec.ID, again.ID)
}

func TestReencryptResealsForwardingRowsSoTheOldKeyRetires(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	stale := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: e.clock.Now,
		Egress: vaulttest.LoopbackEgress(5*time.Second, dest.Server), AllowLoopback: true})
	staleActor := vaulttest.Actor(t, stale, e.secret)
	tok, _ := e.tokenize(t, visa("pm_rekey"))
	_, err := stale.GetToken(ctx, staleActor, tok.ID) // the replica loads the tenant's keys now
	require.NoError(t, err)
	signed := vault.DestinationInput{URL: dest.URL + "/cde-import", Preset: "stripe_own_vault",
		Config: json.RawMessage(`{"signature":{"encoding":"hex","header":"X-Signature"}}`), SignatureSecret: card.NewSecret("sig-key")}
	_, err = e.svc.CreateDestination(ctx, e.actor, signed)
	require.NoError(t, err)
	rec, err := e.forward(t, "pm_rekey", dest.URL+"/cde-import", "", "card_number", "request_signature")
	require.NoError(t, err)
	old := keyByState(e.keyStatus(t), "primary")
	_, err = e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	require.NoError(t, reencrypt(ctx, e), "re-seals the token, the record and the destination's signature key")

	// A replica that still seals with the old key adds a destination after the job passed.
	signed.URL = dest.URL + "/other"
	_, err = stale.CreateDestination(ctx, staleActor, signed)
	require.NoError(t, err)
	err = e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false)
	require.Equal(t, vault.KindConflict, vault.ErrorKind(err), "the late destination still needs the old key: %v", err)
	require.NoError(t, reencrypt(ctx, e))
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false))
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, true))

	stored, err := e.svc.GetForwardingRequest(ctx, e.actor, rec.ID)
	require.NoError(t, err, "the record opens under the new key")
	assert.Equal(t, rec.Request, stored.Request)
	for _, url := range []string{dest.URL + "/cde-import", dest.URL + "/other"} {
		_, err = e.forward(t, "pm_rekey", url, "", "card_number", "request_signature")
		require.NoError(t, err, "the destination's signature key opens under the new key")
	}
}

// reencrypt runs a re-encryption job of e's tenant to its end.
func reencrypt(ctx context.Context, e *forwardEnv) error {
	job, _, err := e.svc.StartReencrypt(ctx, e.actor)
	if err != nil {
		return err
	}
	_, err = e.svc.RunOneKeyJob(ctx, "worker", job.ID)
	return err
}

func TestDestroyTenantShredsItsForwardingRows(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	e.tokenize(t, visa("pm_shred"))
	e.ownVaultDestination(t, dest.URL+"/cde-import")
	_, err := e.forward(t, "pm_shred", dest.URL+"/cde-import", "", "card_number")
	require.NoError(t, err)
	_, err = e.svc.DestroyTenant(ctx, e.actor.TenantID)
	require.NoError(t, err)
	var n int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM forwarding_requests WHERE tenant_id = $1) +
		(SELECT count(*) FROM forwarding_destinations WHERE tenant_id = $1)`, e.actor.TenantID).Scan(&n))
	assert.Zero(t, n)
}

func TestForwardingRequestsArePrunedAfterTheRetentionAndListedByPage(t *testing.T) {
	vaulttest.Truncate(t, vaulttest.Pool(t, dbURL)) // pruning is across tenants
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	e.tokenize(t, visa("pm_list"))
	e.ownVaultDestination(t, dest.URL+"/cde-import")
	var ids []string // oldest first, a minute apart
	for range 5 {
		rec, err := e.forward(t, "pm_list", dest.URL+"/cde-import", "", "card_number")
		require.NoError(t, err)
		ids = append(ids, rec.ID)
		e.clock.Advance(time.Minute)
	}
	list := func(p vault.ListForwardingParams) ([]string, bool) {
		t.Helper()
		page, err := e.svc.ListForwardingRequests(ctx, e.actor, p)
		require.NoError(t, err)
		var got []string
		for _, r := range page.Requests {
			got = append(got, r.ID)
		}
		return got, page.HasMore
	}
	got, more := list(vault.ListForwardingParams{Limit: 2})
	assert.Equal(t, []string{ids[4], ids[3]}, got)
	assert.True(t, more)
	got, more = list(vault.ListForwardingParams{Limit: 2, StartingAfter: ids[3]})
	assert.Equal(t, []string{ids[2], ids[1]}, got)
	assert.True(t, more)
	got, more = list(vault.ListForwardingParams{Limit: 2, EndingBefore: ids[1]})
	assert.Equal(t, []string{ids[3], ids[2]}, got)
	assert.True(t, more)
	from, until := e.clock.Now().Add(-4*time.Minute), e.clock.Now().Add(-2*time.Minute)
	got, _ = list(vault.ListForwardingParams{Limit: 10, CreatedFrom: &from, CreatedUntil: &until})
	assert.Equal(t, []string{ids[2], ids[1]}, got)
	_, err := e.svc.ListForwardingRequests(ctx, e.otherActor(t), vault.ListForwardingParams{Limit: 10, StartingAfter: ids[0]})
	assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err), "another tenant's cursor names nothing")

	e.clock.Advance(vault.DefaultForwardRetention - 3*time.Minute)
	n, err := e.svc.PruneForwardingRequests(ctx, vault.DefaultForwardRetention)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "the two records older than 30 days")
	got, _ = list(vault.ListForwardingParams{Limit: 10})
	assert.Equal(t, []string{ids[4], ids[3], ids[2]}, got)
	_, err = e.svc.GetForwardingRequest(ctx, e.actor, ids[0])
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
}

var _ vault.Forwarding = (*postgres.Service)(nil)

// clientCertPEM returns a CA pool and a client certificate it signed
// (common name cn), with its private key, both PEM.
func clientCertPEM(t *testing.T, cn string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func TestAForwardPresentsTheDestinationsSealedClientCertificate(t *testing.T) {
	pool, certPEM, keyPEM := clientCertPEM(t, "merchant-at-psp")
	var seen atomic.Value
	dest := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		w.WriteHeader(http.StatusOK)
	}))
	dest.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	dest.StartTLS()
	t.Cleanup(dest.Close)
	e := newForwardEnv(t, dest)
	ctx := context.Background()
	e.tokenize(t, visa("pm_mtls"))
	d, err := e.svc.CreateDestination(ctx, e.actor, vault.DestinationInput{URL: dest.URL + "/mtls/cde-import", Preset: "stripe_own_vault",
		ClientCertificatePEM: certPEM, ClientKeyPEM: card.NewSecret(keyPEM)})
	require.NoError(t, err)
	assert.True(t, d.HasClientCert)
	require.NotNil(t, d.ClientCertExpires)
	read, err := e.svc.GetDestination(ctx, e.actor, d.ID)
	require.NoError(t, err)
	require.NotNil(t, read.ClientCertExpires, "a read says until when the certificate is presented")
	assert.True(t, d.ClientCertExpires.Equal(*read.ClientCertExpires))
	e.ownVaultDestination(t, dest.URL+"/plain/cde-import")

	rec, err := e.forward(t, "pm_mtls", dest.URL+"/mtls/cde-import", "", "card_number")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, rec.Response.Status)
	assert.Equal(t, "merchant-at-psp", seen.Load(), "the destination saw the client certificate")
	_, err = e.forward(t, "pm_mtls", dest.URL+"/plain/cde-import", "", "card_number")
	assert.Equal(t, vault.CodeForwardConnectionError, vault.AsError(err).Code, "without the certificate the handshake fails")

	var certCT []byte
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT client_cert_ct FROM forwarding_destinations WHERE id = $1`, d.ID).Scan(&certCT))
	assert.NotContains(t, string(certCT), "PRIVATE KEY", "the key is sealed")
	require.NoError(t, e.svc.DeleteDestination(ctx, e.actor, d.ID))
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT client_cert_ct FROM forwarding_destinations WHERE id = $1`, d.ID).Scan(&certCT))
	assert.Nil(t, certCT, "a removed destination keeps no secret")
}
