package httpapi_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// fileTenant is a tenant with an import key, its API key, and GnuPG
// holding the public half.
type fileTenant struct {
	id        uuid.UUID
	key       string
	gpg       *vaulttest.GnuPG
	recipient string
}

func newFileTenant(t *testing.T, ts *testServer) fileTenant {
	t.Helper()
	id, key := vaulttest.Tenant(t, ts.svc, vault.ScopeImportsWrite, vault.ScopeImportsRead, vault.ScopeWebhooksManage)
	k, err := ts.svc.CreatePGPKey(context.Background(), vault.Operator(id))
	require.NoError(t, err)
	g := vaulttest.GPG(t)
	g.ImportKey(k.PublicKey)
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(k.PublicKey))
	require.NoError(t, err)
	return fileTenant{id: id, key: key, gpg: g, recipient: strings.ToUpper(ring[0].PrimaryKey.KeyIdString())}
}

// stripeCSVExport returns the public test cards as Stripe's PAN export
// (stripe-csv), a Luhn-invalid copy of the first at row bad, and the numbers
// by card id.
func stripeCSVExport(t *testing.T, bad int) (string, map[string]string) {
	t.Helper()
	var b strings.Builder
	w := csv.NewWriter(&b)
	require.NoError(t, w.Write([]string{"id", "email", "card.id", "card.number", "card.exp_month", "card.exp_year", "card.name"}))
	numbers := map[string]string{}
	for i, c := range vaulttest.Cards(t) {
		if i+1 == bad {
			n := c.Number[:len(c.Number)-1] + string('0'+(c.Number[len(c.Number)-1]-'0'+1)%10)
			require.NoError(t, w.Write([]string{"cus_bad", "bad@example.com", "card_bad", n, "1", "2031", ""}))
		}
		id := fmt.Sprintf("card_%02d", i)
		numbers[id] = c.Number
		require.NoError(t, w.Write([]string{fmt.Sprintf("cus_%02d", i), "holder@example.com", id, c.Number, "12", "2031", "Test Holder"}))
	}
	w.Flush()
	return b.String(), numbers
}

// upload posts file as a multipart/form-data file import.
func (ts *testServer) upload(t *testing.T, key string, fields [][2]string, file []byte) response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range fields {
		require.NoError(t, mw.WriteField(f[0], f[1]))
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "export.csv.pgp")
		require.NoError(t, err)
		_, err = fw.Write(file)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/tokens/imports", &body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-API-Key", key)
	res, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

var fileFields = [][2]string{{"provider", "file"}, {"format", "stripe-csv"}}

// runFileImports runs a file import worker over ts's service until t ends.
func runFileImports(t *testing.T, ts *testServer) {
	t.Helper()
	w, err := cardfile.NewWorker(cardfile.WorkerConfig{Queue: ts.svc, Owner: "test-worker", Poll: 20 * time.Millisecond,
		BatchRows: 4, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// awaitImport polls GET /tokens/imports/{id} until the job has ended.
func (ts *testServer) awaitImport(t *testing.T, key, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		job := ts.do(t, http.MethodGet, "/tokens/imports/"+id, key, "").json(t)
		if s := job["status"]; s != "preparing" && s != "running" {
			return job
		}
		require.True(t, time.Now().Before(deadline), "the import ends within 30 s: %v", job)
		time.Sleep(20 * time.Millisecond) // a poll: the condition is checked, not timed
	}
}

func TestUploadAGnuPGEncryptedStripeExportAndDownloadItsMapping(t *testing.T) {
	ts := newTestServer(t)
	ft := newFileTenant(t, ts)
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodPut, "/webhook", ft.key, `{"url":"http://127.0.0.1:9/hooks"}`).status)
	clear, numbers := stripeCSVExport(t, 3)
	file := ft.gpg.Encrypt(ft.recipient, []byte(clear))

	res := ts.upload(t, ft.key, fileFields, file)
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
	job := res.json(t)
	assert.Equal(t, "file", job["provider"])
	assert.Equal(t, "preparing", job["status"])
	assert.Nil(t, job["stripe"])
	assert.Equal(t, map[string]any{"format": "stripe-csv", "size": float64(len(file)), "rows_done": float64(0)}, job["file"])
	id := job["id"].(string)

	again := ts.upload(t, ft.key, fileFields, file)
	assert.Equal(t, http.StatusConflict, again.status, "one active import per tenant")

	runFileImports(t, ts)
	job = ts.awaitImport(t, ft.key, id)
	require.Equal(t, "finished", job["status"], "%v", job)
	total := float64(len(numbers) + 1)
	assert.Equal(t, map[string]any{"total": total, "attempts": total, "successes": float64(len(numbers)), "failures": float64(1), "skipped": float64(0)}, job["counts"])

	failed := ts.do(t, http.MethodGet, "/tokens/imports/"+id+"/items?status=failed", ft.key, "").json(t)["data"].([]any)
	require.Len(t, failed, 1)
	item := failed[0].(map[string]any)
	assert.Equal(t, float64(3), item["seq"], "the ledger names the row")
	assert.Equal(t, "card_bad", item["payment_method"])
	assert.Contains(t, item["last_error"], "incorrect_number")

	m := ts.do(t, http.MethodGet, "/tokens/imports/"+id+"/mapping", ft.key, "")
	require.Equal(t, http.StatusOK, m.status, "%s", m.body)
	assert.Equal(t, "text/csv; charset=utf-8", m.header.Get("Content-Type"))
	lines, err := csv.NewReader(bytes.NewReader(m.body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, vault.MappingColumns, lines[0])
	require.Len(t, lines, len(numbers)+2)
	for _, l := range lines[1:] {
		number, ok := numbers[l[1]]
		if !ok {
			assert.Equal(t, []string{"3", "card_bad", "", "", ""}, l[:5])
			assert.Equal(t, "failed", l[5])
			continue
		}
		assert.Equal(t, "created", l[5])
		assert.Equal(t, number[:6], l[4][:6])
		assert.Equal(t, number[len(number)-4:], l[4][len(l[4])-4:])
		assert.Len(t, l[4], len(number), "the mask keeps the length")
		assert.NotEmpty(t, l[3], "the fingerprint")
	}
	for _, n := range numbers {
		assert.NotContains(t, string(m.body), n, "the mapping never holds a full number")
		assert.NotContains(t, ts.log.String(), n)
	}

	pool := vaulttest.Pool(t, dbURL)
	var finishedEvents, chunks int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_events WHERE tenant_id = $1 AND type = 'import.finished'`,
		ft.id).Scan(&finishedEvents))
	assert.Equal(t, 1, finishedEvents, "import.finished is queued once")
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM import_file_chunks WHERE job_id = $1`, id).Scan(&chunks))
	assert.Zero(t, chunks, "the encrypted file is deleted when the job ends")
}

func TestAnUploadIsRefusedClearly(t *testing.T) {
	ts := newTestServer(t)
	ts.serve(t, httpapi.New(ts.svc, slog.New(slog.DiscardHandler), httpapi.WithImportFileLimit(1024)))
	ft := newFileTenant(t, ts)
	clear, _ := stripeCSVExport(t, 0)
	big := ft.gpg.Encrypt(ft.recipient, []byte(strings.Repeat(clear, 4)))
	require.Greater(t, len(big), 1024)

	tests := []struct {
		name   string
		fields [][2]string
		file   []byte
		status int
		code   string
	}{
		{"over the limit", fileFields, big, http.StatusRequestEntityTooLarge, vault.CodeBodyTooLarge},
		{"no provider", [][2]string{{"format", "stripe-csv"}}, []byte("x"), http.StatusUnprocessableEntity, vault.CodeInvalidProvider},
		{"unknown format", [][2]string{{"provider", "file"}, {"format", "xlsx"}}, []byte("x"), http.StatusUnprocessableEntity, vault.CodeParameterInvalid},
		{"no file", fileFields, nil, http.StatusUnprocessableEntity, vault.CodeParameterMissing},
		{"empty file", fileFields, []byte{}, http.StatusUnprocessableEntity, vault.CodeParameterInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ts.upload(t, ft.key, tt.fields, tt.file)
			require.Equal(t, tt.status, res.status, "%s", res.body)
			assert.Equal(t, tt.code, res.json(t)["error"].(map[string]any)["code"])
		})
	}
	list := ts.do(t, http.MethodGet, "/tokens/imports", ft.key, "").json(t)
	assert.Empty(t, list["data"], "a refused upload leaves no job")
}
