package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// cardSet is a clear Stripe export made of the public test cards: each
// card's number by its card id, and the ids of rows that must fail.
type cardSet struct {
	numbers map[string]string
	bad     map[string]int // card id -> row number
	csv     string
	json    string // the same rows as stripe-json
}

// stripeExport returns every public test card as a stripe-csv export, with a
// Luhn-invalid copy of the first card at row badRow.
func stripeExport(t *testing.T, badRow int) cardSet {
	t.Helper()
	set := cardSet{numbers: map[string]string{}, bad: map[string]int{}}
	var b strings.Builder
	w := csv.NewWriter(&b)
	require.NoError(t, w.Write([]string{"id", "name", "email", "card.id", "card.number", "card.exp_month",
		"card.exp_year", "card.name", "card.address_zip", "default_source", "card.transaction_ids"}))
	var objs []string
	row := 0
	for i, c := range vaulttest.Cards(t) {
		row++
		if row == badRow {
			bad := c.Number[:len(c.Number)-1] + string('0'+(c.Number[len(c.Number)-1]-'0'+1)%10)
			set.bad["card_bad"] = row
			require.NoError(t, w.Write([]string{"cus_bad", "", "bad@example.com", "card_bad", bad, "1", "2031", "", "", "", ""}))
			objs = append(objs, fmt.Sprintf(`{"id":"cus_bad","email":"bad@example.com","card":{"id":"card_bad","number":%q,"exp_month":1,"exp_year":2031}}`, bad))
			row++
		}
		id := fmt.Sprintf("card_%02d", i)
		set.numbers[id] = c.Number
		require.NoError(t, w.Write([]string{fmt.Sprintf("cus_%02d", i), "Test Holder", "holder@example.com", id, c.Number,
			"12", "2031", "Test Holder", "94107", id, `["MCC0001","MCC0002"]`}))
		objs = append(objs, fmt.Sprintf(`{"id":"cus_%02d","name":"Test Holder","email":"holder@example.com","default_source":%q,`+
			`"card":{"id":%q,"number":%q,"exp_month":12,"exp_year":2031,"name":"Test Holder","address_zip":"94107","transaction_ids":["MCC0001","MCC0002"]}}`,
			i, id, id, c.Number))
	}
	w.Flush()
	set.csv = b.String()
	set.json = "[\n" + strings.Join(objs, ",\n") + "\n]\n"
	return set
}

// encryptTo returns clear encrypted (binary OpenPGP) to the armored public
// key pub, with the Go OpenPGP library.
func encryptTo(t *testing.T, pub, clear string) []byte {
	t.Helper()
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(pub))
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := openpgp.Encrypt(&buf, ring, nil, nil, nil)
	require.NoError(t, err)
	_, err = w.Write([]byte(clear))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// writeTemp writes data to a file named name in a fresh directory.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// importFile runs `import file` and returns its stdout, stderr and error.
func (v pgpVault) importFile(t *testing.T, format, path string) (string, string, error) {
	t.Helper()
	return run(t, append([]string{"import", "file", "--tenant", v.tenant, "--format", format, path}, v.db...)...)
}

// readMapping returns the mapping file's lines by old id.
func readMapping(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, mappingHeader, recs[0])
	m := map[string][]string{}
	for _, r := range recs[1:] {
		m[r[1]] = r
	}
	return m
}

// checkImported asserts that every good card of set detokenizes equal
// under its business key, and that the bad rows failed alone.
func (v pgpVault) checkImported(t *testing.T, set cardSet, mapping map[string][]string) {
	t.Helper()
	svc := vaulttest.NewService(t, v.url, vaulttest.Options{KEK: v.kek})
	a := vault.Operator(uuid.MustParse(v.tenant))
	for id, number := range set.numbers {
		line := mapping[id]
		require.NotNil(t, line, "card %s is in the mapping", id)
		require.Contains(t, []string{"created", "existing"}, line[5], "card %s: %s", id, line[6])
		r, err := svc.Detokenize(context.Background(), a, uuid.MustParse(line[2]), "test")
		require.NoError(t, err)
		assert.Equal(t, number, r.Card.PAN.Reveal(), "card %s detokenizes equal", id)
		assert.Equal(t, id, r.Token.BusinessKey, "the business key is the card id")
		assert.Equal(t, r.Token.MaskedAccountNumber(), line[4])
		assert.NotContains(t, strings.Join(line, ","), number, "the mapping never holds a full number")
	}
	for id, row := range set.bad {
		line := mapping[id]
		require.NotNil(t, line)
		assert.Equal(t, fmt.Sprint(row), line[0])
		assert.Equal(t, "failed", line[5])
		assert.Contains(t, line[6], "incorrect_number")
	}
}

// assertNoCardData fails when any number of set appears in texts.
func assertNoCardData(t *testing.T, set cardSet, texts ...string) {
	t.Helper()
	all := strings.Join(texts, "\n")
	for _, n := range set.numbers {
		assert.NotContains(t, all, n)
	}
}

func TestImportFileTokenizesAStripeExportEncryptedToTheImportKey(t *testing.T) {
	v := newPGPVault(t)
	pub := v.createPGPKey(t)
	set := stripeExport(t, 4)
	path := writeTemp(t, "export.csv.pgp", encryptTo(t, pub, set.csv))

	out, errOut, err := v.importFile(t, "stripe-csv", path)
	require.NoError(t, err, errOut)
	mappingPath := strings.TrimSpace(out)
	assert.Equal(t, strings.TrimSuffix(path, ".pgp")+".mapping.csv", mappingPath)
	assert.Contains(t, errOut, "row 4: incorrect_number")
	assertNoCardData(t, set, out, errOut)
	assert.Contains(t, errOut, fmt.Sprintf("%d created, 0 already present, 1 failed", len(set.numbers)))
	v.checkImported(t, set, readMapping(t, mappingPath))

	out, errOut, err = v.importFile(t, "stripe-csv", path)
	require.NoError(t, err, errOut)
	assert.Contains(t, errOut, fmt.Sprintf("0 created, %d already present, 1 failed", len(set.numbers)),
		"a second run finds every card under its business key")
}

// TestImportFileRefusesAFileOverVAULT_IMPORT_FILE_MAX_BYTES: `import file`
// takes the limit from the variable (and the flag), refuses a larger file
// with an error naming the setting, and leaves no job behind; a file within
// the limit is imported.
func TestImportFileRefusesAFileOverVAULT_IMPORT_FILE_MAX_BYTES(t *testing.T) {
	v := newPGPVault(t)
	pub := v.createPGPKey(t)
	set := stripeExport(t, 0)
	file := encryptTo(t, pub, set.csv)
	path := writeTemp(t, "export.csv.pgp", file)

	t.Setenv("VAULT_IMPORT_FILE_MAX_BYTES", fmt.Sprint(len(file)-1))
	_, _, err := v.importFile(t, "stripe-csv", path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "VAULT_IMPORT_FILE_MAX_BYTES")
	assert.Contains(t, err.Error(), fmt.Sprintf("over the limit of %d bytes", len(file)-1))
	_, _, err = run(t, append([]string{"import", "file", "--tenant", v.tenant, "--format", "stripe-csv", "--import-file-max-bytes", "100", path}, v.db...)...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "over the limit of 100 bytes", "the flag overrides the variable")
	var jobs, chunks int
	v.queryOne(t, `SELECT count(*) FROM import_jobs`, &jobs)
	v.queryOne(t, `SELECT count(*) FROM import_file_chunks`, &chunks)
	assert.Zero(t, jobs, "a refused file leaves no job")
	assert.Zero(t, chunks, "nor any of its bytes")

	t.Setenv("VAULT_IMPORT_FILE_MAX_BYTES", fmt.Sprint(len(file)))
	_, errOut, err := v.importFile(t, "stripe-csv", path)
	require.NoError(t, err, errOut)
	assert.Contains(t, errOut, fmt.Sprintf("%d created", len(set.numbers)))
}
