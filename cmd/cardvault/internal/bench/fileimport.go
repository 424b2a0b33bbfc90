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
	var res e2e.Result
	start := time.Now()
	job, err := b.uploadCardFile(ctx)
	lastDraw := time.Time{}
	for err == nil && job.Status != "finished" && job.Status != "failed" && job.Status != "aborted" {
		if time.Since(lastDraw) >= 250*time.Millisecond {
			lastDraw = time.Now()
			fmt.Fprintf(progress, "\r%-16s %9d of %d rows %9.0f rows/s %6d errors", PhaseFileImport,
				job.Counts.Successes, job.Counts.Total, float64(job.Counts.Successes)/time.Since(start).Seconds(), job.Counts.Failures)
		}
		if time.Since(start) > importTimeout {
			err = fmt.Errorf("file import did not end within %s", importTimeout)
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(25 * time.Millisecond):
			var out []byte
			if out, err = b.client.Call(ctx, http.MethodGet, "/tokens/imports/"+job.ID, nil, http.StatusOK); err == nil {
				err = json.Unmarshal(out, &job)
			}
		}
	}
	res.Elapsed = time.Since(start)
	res.Requests, res.Errors = job.Counts.Successes, job.Counts.Failures
	fmt.Fprintf(progress, "\r%-16s %9d of %d rows %9.0f rows/s %6d errors\n", PhaseFileImport,
		res.Requests, job.Counts.Total, float64(res.Requests)/res.Elapsed.Seconds(), res.Errors)
	switch {
	case err != nil:
		res.Errors++
		res.FirstErr = err
	case job.Status != "finished":
		res.Errors++
		reason := ""
		if job.FailureReason != nil {
			reason = ": " + *job.FailureReason
		}
		res.FirstErr = fmt.Errorf("file import %s%s", job.Status, reason)
	case job.Counts.Failures > 0:
		res.FirstErr = fmt.Errorf("%d rows failed to import; GET /tokens/imports/%s/items?status=failed", job.Counts.Failures, job.ID)
	}
	return res
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
