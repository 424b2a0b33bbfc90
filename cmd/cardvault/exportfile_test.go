package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer/cardfile"
)

// exportFile runs `export file` of v's tenant to the key file keyPath and
// returns the encrypted file's path, stdout, stderr and error.
func (v pgpVault) exportFile(t *testing.T, keyPath, format string, extra ...string) (string, string, string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.pgp")
	args := append([]string{"export", "file", "--tenant", v.tenant, "--recipient-key", keyPath, "--format", format, "--out", out}, extra...)
	stdout, stderr, err := run(t, append(args, v.db...)...)
	return out, stdout, stderr, err
}

// readClearRows returns the rows of a clear card file by old id.
func readClearRows(t *testing.T, format cardfile.Format, clear []byte) map[string]cardfile.Row {
	t.Helper()
	rd, err := cardfile.NewReader(bytes.NewReader(clear), format)
	require.NoError(t, err)
	rows := map[string]cardfile.Row{}
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rows
		}
		require.NoError(t, err)
		require.NoError(t, r.Err)
		rows[r.OldID] = r
	}
}

// importedVault returns a vault whose tenant holds the cards of set.
func importedVault(t *testing.T, set cardSet) pgpVault {
	t.Helper()
	v := newPGPVault(t)
	path := writeTemp(t, "in.pgp", encryptTo(t, v.createPGPKey(t), set.csv))
	_, errOut, err := v.importFile(t, "stripe-csv", path)
	require.NoError(t, err, errOut)
	return v
}

func TestExportFileOpensWithGnuPGInEveryFormat(t *testing.T) {
	set := stripeExport(t, 0)
	v := importedVault(t, set)
	g := vaulttestGPG(t)
	keyPath := writeTemp(t, "peer.asc", []byte(g.GenerateKey("peer <peer@example.com>", "rsa3072")))

	formats := []cardfile.Format{cardfile.StripeCSV, cardfile.StripeJSON, cardfile.JSONL}
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			path, stdout, stderr, err := v.exportFile(t, keyPath, string(f), "--confirm")
			require.NoError(t, err, stderr)
			assertNoCardData(t, set, stdout, stderr)
			enc, err := os.ReadFile(path)
			require.NoError(t, err)
			assertNoCardData(t, set, string(enc))
			clear, err := g.Decrypt(enc)
			require.NoError(t, err)
			rows := readClearRows(t, f, clear)
			require.Len(t, rows, len(set.numbers))
			for id, number := range set.numbers {
				assert.Equal(t, number, rows[id].Input.Card.Number, "card %s leaves as it is", id)
				assert.Equal(t, "MCC0001,MCC0002", rows[id].Input.Metadata[cardfile.MetaTransactionIDs])
				assert.Equal(t, "true", rows[id].Input.Metadata[cardfile.MetaDefault])
			}
			assert.NotContains(t, string(clear), "cvc", "a CVC never leaves")
		})
	}
	var audited int
	v.queryOne(t, `SELECT count(*) FROM audit_events WHERE action = 'token.export'`, &audited)
	assert.Equal(t, len(formats)*len(set.numbers), audited, "one token.export row per token and export")
}

func TestExportFileImportsBackIntoAnotherVaultUnchanged(t *testing.T) {
	set := stripeExport(t, 0)
	a := importedVault(t, set)
	b := newPGPVault(t)
	keyPath := writeTemp(t, "b.asc", []byte(b.createPGPKey(t)))

	path, _, stderr, err := a.exportFile(t, keyPath, "jsonl", "--confirm")
	require.NoError(t, err, stderr)
	out, errOut, err := b.importFile(t, "jsonl", path)
	require.NoError(t, err, errOut)
	b.checkImported(t, set, readMapping(t, strings.TrimSpace(out)))
}

func TestExportFileSelectsByBusinessKeyPrefixAndCreationTime(t *testing.T) {
	set := stripeExport(t, 0)
	v := importedVault(t, set)
	g := vaulttestGPG(t)
	keyPath := writeTemp(t, "peer.asc", []byte(g.GenerateKey("peer <peer@example.com>", "rsa3072")))
	tests := []struct {
		name  string
		extra []string
		want  int
	}{
		{"prefix of one card", []string{"--business-key-prefix", "card_03"}, 1},
		{"prefix of none", []string{"--business-key-prefix", "pm_"}, 0},
		{"created after the import", []string{"--created-after", time.Now().Add(time.Hour).Format(time.RFC3339)}, 0},
		{"created after a day ago", []string{"--created-after", time.Now().Add(-24 * time.Hour).Format(time.RFC3339)}, len(set.numbers)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _, stderr, err := v.exportFile(t, keyPath, "jsonl", append(tt.extra, "--confirm")...)
			require.NoError(t, err, stderr)
			enc, err := os.ReadFile(path)
			require.NoError(t, err)
			clear, err := g.Decrypt(enc)
			require.NoError(t, err)
			assert.Len(t, readClearRows(t, cardfile.JSONL, clear), tt.want)
		})
	}
}

func TestExportFileRefusesAWeakKeyAndAnUnconfirmedRun(t *testing.T) {
	set := stripeExport(t, 0)
	v := importedVault(t, set)
	g := vaulttestGPG(t)
	weak := writeTemp(t, "weak.asc", []byte(g.GenerateKey("weak <weak@example.com>", "rsa2048")))
	strong := writeTemp(t, "strong.asc", []byte(g.GenerateKey("strong <strong@example.com>", "rsa3072")))

	tests := []struct {
		name, key string
		extra     []string
		want      string
	}{
		{"rsa 2048", weak, []string{"--confirm"}, "at least 3072"},
		{"no confirm", strong, nil, "--confirm"},
		{"not a key", writeTemp(t, "x.asc", []byte("hello")), []string{"--confirm"}, "exactly one armored OpenPGP public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, stdout, stderr, err := v.exportFile(t, tt.key, "stripe-csv", tt.extra...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NoFileExists(t, path)
			assertNoCardData(t, set, stdout, stderr, err.Error())
		})
	}
	var audited int
	v.queryOne(t, `SELECT count(*) FROM audit_events WHERE action = 'token.export'`, &audited)
	assert.Zero(t, audited, "nothing was exported")
}
