package httpapi_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/exporter"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// dumpAll returns every row of every table in schema public as JSON text;
// bytea values appear as hex.
func dumpAll(t *testing.T) string {
	t.Helper()
	pool := vaulttest.Pool(t, dbURL)
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "tokens")
	var b strings.Builder
	for _, table := range tables {
		rows, err := pool.Query(ctx, `SELECT to_jsonb(t)::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		fmt.Fprintf(&b, "%s\n%s\n", table, strings.Join(lines, "\n"))
	}
	return b.String()
}

// forbidden lists the forms in which a secret must not appear: as text, as
// the hex of its bytes (how bytea dumps) and, for short CVCs, as a JSON
// string value, as a JSON string value inside a bytea, or as a whole bytea
// value. A short secret's bare hex (6–8 hex digits) is not searched for: it
// turns up by chance in the dump's ciphertexts and keyed audit hashes.
func forbidden(secret string, short bool) []string {
	if short {
		quoted := `"` + secret + `"`
		return []string{quoted, hex.EncodeToString([]byte(quoted)), `"\\x` + hex.EncodeToString([]byte(secret)) + `"`}
	}
	return []string{secret, hex.EncodeToString([]byte(secret))}
}

func TestNoCardDataAtRestOrInLogs(t *testing.T) {
	echo := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // the destination echoes the card, as a careless one may
		w.Header().Set("X-Echo", string(b))
		_, _ = w.Write(b)
	}))
	t.Cleanup(echo.Close)
	// An export's receiver that answers with the card number as its token
	// id: the ledger does not keep it.
	panID := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Card struct {
				Number string `json:"number"`
			} `json:"card"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		_, _ = fmt.Fprintf(w, `{"id":%q}`, in.Card.Number)
	}))
	t.Cleanup(panID.Close)
	ts := newTestServer(t, forwardingTo(5*time.Second, echo, panID))
	key := ts.key(t)
	ts.addDestination(t, key, `{"url":"`+echo.URL+`/cde-import","preset":"stripe_own_vault"}`)
	cvcs := []string{"7391", "846"}
	const name = "Quentin Zyxwerth"
	var secrets []string
	for i, c := range vaulttest.Cards(t) {
		cvc := cvcs[i%2]
		body := fmt.Sprintf(`{"metadata":{"business_key":"pm_rest_%d"},"card":{"number":%q,"exp_month":"04","exp_year":"2033","cvc":%q,"name":%q}}`,
			i, c.Number, cvc, name)
		res := ts.do(t, http.MethodPost, "/cde-import", key, body, "User-Agent", "Stripe")
		require.Equal(t, http.StatusCreated, res.status, "%s: %s", c.Description, res.body)
		id := res.json(t)["id"].(string)
		if i%2 == 0 { // forwarded, the CVC with it, and echoed back
			fwd := ts.postForm(t, "/v1/forwarding/requests", key, forwardForm(id, echo.URL+"/cde-import"))
			require.Equal(t, http.StatusOK, fwd.status, "%s: %s", c.Description, fwd.body)
		}
		if i%3 == 0 {
			require.Equal(t, http.StatusOK, ts.do(t, http.MethodPost, "/tokens/"+id+"/detokenize", key, "").status)
		}
		// Error paths carrying the same PAN: bad month, bad CVC, PAN in metadata.
		ts.do(t, http.MethodPost, "/tokens", key, fmt.Sprintf(`{"card":{"number":%q,"exp_month":"13","exp_year":"2033"}}`, c.Number))
		ts.do(t, http.MethodPost, "/tokens", key, fmt.Sprintf(`{"card":{"number":%q,"exp_month":"1","exp_year":"2033","cvc":"12a"}}`, c.Number))
		ts.do(t, http.MethodPost, "/tokens", key, fmt.Sprintf(`{"metadata":{"x":%q},"card":{"number":%q,"exp_month":"1","exp_year":"2033"}}`, c.Number, c.Number))
		ts.do(t, http.MethodPost, "/tokens", "cvk_"+c.Number, cardBody("pm_x", c.Number))
		secrets = append(secrets, forbidden(c.Number, false)...)
	}
	for _, cvc := range cvcs {
		secrets = append(secrets, forbidden(cvc, true)...)
	}
	secrets = append(secrets, forbidden(name, false)...)
	exportAll(t, ts, key, panID.URL)
	secrets = append(secrets, forbidden(exportHeaderSecret, false)...)
	uploadCardFile(t, ts, key) // its ciphertext is kept until a worker runs the job

	dump, log := dumpAll(t), ts.log.String()
	require.Contains(t, dump, "import_file_chunks\n{", "the dump covers an uploaded card file")
	require.Contains(t, dump, "token.reveal", "the dump covers the audit trail")
	require.Contains(t, dump, "fwdreq_", "the dump covers the forwarding records")
	require.Contains(t, dump, "fwddst_", "and the destinations")
	require.Contains(t, dump, "no usable token id", "and the export ledger (a receiver's id holding the card number is not kept)")
	require.Contains(t, dump, "export_jobs\n{", "and the export jobs")
	require.Contains(t, dump, "cvc_expiries\n{", "and the CVC expiry queue")
	require.Contains(t, log, `"status":422`, "the log covers the error paths")
	for _, s := range secrets {
		assert.NotContains(t, dump, s, "database dump")
		assert.NotContains(t, log, s, "server log")
	}
}

// exportHeaderSecret is the API key an export sends to its receiver: kept
// sealed only.
const exportHeaderSecret = "cvk_exportReceiverSecret0001"

// exportAll runs an export job of every token of key's tenant to the
// receiver at url until it ends.
func exportAll(t *testing.T, ts *testServer, key, url string) {
	t.Helper()
	dest := ts.addDestination(t, key, `{"url":"`+url+`/cde-import","preset":"stripe_own_vault"}`)
	res := ts.do(t, http.MethodPost, "/tokens/exports", key,
		`{"destination":"`+dest+`","headers":[{"name":"X-API-Key","value":"`+exportHeaderSecret+`"}],"rate_limit":1000}`)
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
	id := res.json(t)["id"].(string)
	r, err := exporter.New(exporter.Config{Service: ts.svc, Owner: "atrest", Poll: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for ts.do(t, http.MethodGet, "/tokens/exports/"+id, key, "").json(t)["status"] == "running" {
		require.True(t, time.Now().Before(deadline), "the export did not end")
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// uploadCardFile uploads every test card as an encrypted stripe-csv file
// import for key's tenant: the file's chunks are OpenPGP ciphertext, the
// one form in which card data may be stored besides sealed tokens.
func uploadCardFile(t *testing.T, ts *testServer, key string) {
	t.Helper()
	a := vaulttest.Actor(t, ts.svc, key)
	k, err := ts.svc.CreatePGPKey(context.Background(), vault.Operator(a.TenantID))
	require.NoError(t, err)
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(k.PublicKey))
	require.NoError(t, err)
	var clear strings.Builder
	clear.WriteString("id,card.id,card.number,card.exp_month,card.exp_year,card.name\n")
	for i, c := range vaulttest.Cards(t) {
		fmt.Fprintf(&clear, "cus_%d,card_%d,%s,4,2033,Quentin Zyxwerth\n", i, i, c.Number)
	}
	var file bytes.Buffer
	w, err := openpgp.Encrypt(&file, ring, nil, nil, nil)
	require.NoError(t, err)
	_, err = w.Write([]byte(clear.String()))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	res := ts.upload(t, key, fileFields, file.Bytes())
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
}
