package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// PhaseFileImport is the file import phase: an encrypted Stripe export
// uploaded to POST /tokens/imports and imported by the vault's worker,
// measured end to end (the upload, the verification pass and every batch),
// rows per second.
const PhaseFileImport = "file-import"

// cardFile returns a stripe-csv of n public test numbers (e2e.CardNumber)
// encrypted to the armored public key pub.
func cardFile(pub string, n int) ([]byte, error) {
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(pub))
	if err != nil {
		return nil, fmt.Errorf("the tenant's import key: %w", err)
	}
	var out bytes.Buffer
	enc, err := openpgp.Encrypt(&out, ring, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	w := csv.NewWriter(enc)
	_ = w.Write([]string{"id", "card.id", "card.number", "card.exp_month", "card.exp_year", "card.name"})
	for i := range n {
		_ = w.Write([]string{"cus_bench_" + strconv.Itoa(i/3), "card_bench_" + strconv.Itoa(i), e2e.CardNumber(1_000_000 + i),
			"12", "2031", "Bench Holder"})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// fileImport uploads the bench's card file and polls the job until it
// ends. Each imported row counts as a request; each failed row, and a job
// that does not finish, as an error.
func (b *benchRun) fileImport(ctx context.Context, progress io.Writer) e2e.Result {
	start := time.Now()
	job, err := b.uploadCardFile(ctx)
	return followImport(ctx, b.client, progress, importFollow{phase: PhaseFileImport, unit: "rows", what: "rows"}, start, job, err)
}

// uploadCardFile posts the card file as multipart/form-data and returns
// the job.
func (b *benchRun) uploadCardFile(ctx context.Context) (importRecord, error) {
	var job importRecord
	if len(b.env.cardFile) == 0 {
		return job, fmt.Errorf("no card file: the bench has no import key")
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("provider", "file")
	_ = mw.WriteField("format", "stripe-csv")
	fw, _ := mw.CreateFormFile("file", "bench.csv.pgp")
	_, _ = fw.Write(b.env.cardFile)
	_ = mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.env.child.URL()+"/tokens/imports", &body)
	if err != nil {
		return job, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-API-Key", b.env.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return job, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return job, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return job, fmt.Errorf("POST /tokens/imports (file) answered %d: %.200s", resp.StatusCode, out)
	}
	return job, json.Unmarshal(out, &job)
}
