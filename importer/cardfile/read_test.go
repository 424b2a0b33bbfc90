package cardfile_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/vault"
)

// readAll returns every row of file in format f, and the error that ended
// the reading (nil at a clean end).
func readAll(t *testing.T, f cardfile.Format, file string) ([]cardfile.Row, error) {
	t.Helper()
	rd, err := cardfile.NewReader(strings.NewReader(file), f)
	require.NoError(t, err)
	var rows []cardfile.Row
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
}

const stripeCSV = "id,name,email,card.id,card.number,card.exp_month,card.exp_year,card.name,card.address_zip,default_source,card.transaction_ids\n" +
	"cus_1,Jenny Rosen,jenny@example.com,card_1,4242424242424242,12,2031,Jenny Rosen,94107,card_1,\"[\"\"MCC1\"\",\"\"MCC2\"\"]\"\n" +
	"cus_1,Jenny Rosen,jenny@example.com,card_2,5555555555554444,1,2032,,94107,card_1,\n" +
	"cus_2,,x@example.com,card_3,4242424242424241,3,2033,,,,\n"

const stripeJSON = `[
 {"id":"cus_1","name":"Jenny Rosen","email":"jenny@example.com","default_source":"card_1",
  "card":{"id":"card_1","number":"4242424242424242","exp_month":12,"exp_year":2031,"name":"Jenny Rosen","address_zip":"94107","transaction_ids":["MCC1","MCC2"]}},
 {"id":"cus_1","default_source":"card_1","card":{"id":"card_2","number":"5555555555554444","exp_month":"1","exp_year":"2032"}},
 {"id":"cus_2","card":{"id":"card_3","number":["not","a","number"],"exp_month":3,"exp_year":2033}}
]`

const jsonl = `{"metadata":{"business_key":"card_1","stripe_customer":"cus_1"},"card":{"number":"4242424242424242","exp_month":12,"exp_year":2031,"name":"Jenny Rosen"}}

{"metadata":{"business_key":"card_2"},"card":{"number":"5555555555554444","exp_month":1,"exp_year":2032}}
{"metadata":{"business_key":"card_3"},"card":{"number":"4242424242424242","exp_month":1,"exp_year":2032,"cvc":"123"}}
`

func TestReadersTurnEveryFormatIntoTheSameRows(t *testing.T) {
	tests := []struct {
		format  cardfile.Format
		file    string
		badRow  int
		firstN  int
		metaOne map[string]string
	}{
		{cardfile.StripeCSV, stripeCSV, 3, 1, map[string]string{"stripe_customer": "cus_1", "default": "true", "network_transaction_ids": "MCC1,MCC2"}},
		{cardfile.StripeJSON, stripeJSON, 3, 1, map[string]string{"stripe_customer": "cus_1", "default": "true", "network_transaction_ids": "MCC1,MCC2"}},
		{cardfile.JSONL, jsonl, 4, 1, map[string]string{"stripe_customer": "cus_1"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			rows, err := readAll(t, tt.format, tt.file)
			require.NoError(t, err)
			require.Len(t, rows, 3)
			one := rows[0]
			assert.Equal(t, tt.firstN, one.N)
			assert.Equal(t, "card_1", one.OldID)
			assert.Equal(t, "card_1", one.Input.BusinessKey)
			assert.Equal(t, "4242424242424242", one.Input.Card.Number)
			assert.Equal(t, "12", one.Input.Card.ExpMonth)
			assert.Equal(t, "2031", one.Input.Card.ExpYear)
			assert.Equal(t, "Jenny Rosen", one.Input.Card.Name)
			assert.Equal(t, tt.metaOne, one.Input.Metadata, "no email, customer name or address is kept")
			assert.Equal(t, "card_2", rows[1].Input.BusinessKey)
			assert.NotContains(t, rows[1].Input.Metadata, "default", "card_2 is not the default source")
			if tt.format != cardfile.StripeCSV { // the CSV's third row is well-formed; Luhn is the vault's check
				assert.Equal(t, tt.badRow, rows[2].N)
				assert.Error(t, rows[2].Err)
			}
		})
	}
}

func TestABrokenFileEndsTheReadingWithoutQuotingIt(t *testing.T) {
	tests := []struct {
		name   string
		format cardfile.Format
		file   string
	}{
		{"json truncated", cardfile.StripeJSON, stripeJSON[:120]},
		{"json not an array", cardfile.StripeJSON, `{"card":{}}`},
		{"json garbage", cardfile.StripeJSON, `[{"card":{"number":"4242424242424242"}} 4242424242424242 !`},
		{"csv without number column", cardfile.StripeCSV, "id,card.id\ncus_1,card_1\n"},
		{"csv empty", cardfile.StripeCSV, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(t, tt.format, tt.file)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "4242", "errors never quote the file")
			assert.Equal(t, vault.KindInvalid, vault.ErrorKind(err))
		})
	}
}

// fakeTokenizer refuses numbers failing Luhn-like checks by prefix, and
// fails hard on "unavailable".
type fakeTokenizer struct {
	mu   sync.Mutex
	seen []string
}

func (f *fakeTokenizer) Tokenize(_ context.Context, _ vault.Actor, in vault.TokenizeInput) (vault.Token, bool, error) {
	f.mu.Lock()
	f.seen = append(f.seen, in.BusinessKey)
	f.mu.Unlock()
	if strings.HasSuffix(in.Card.Number, "1") {
		return vault.Token{}, false, vault.InvalidParam("incorrect_number", "card.number", "card number failed the Luhn check")
	}
	return vault.Token{BusinessKey: in.BusinessKey}, true, nil
}

func TestImportFailsABadRowAloneAndCountsEveryRow(t *testing.T) {
	rd, err := cardfile.NewReader(strings.NewReader(stripeCSV), cardfile.StripeCSV)
	require.NoError(t, err)
	tok := &fakeTokenizer{}
	var results []cardfile.Result
	counts, err := cardfile.Import(context.Background(), tok, vault.Actor{}, rd, 4, func(r cardfile.Result) error {
		results = append(results, r)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, cardfile.Counts{Created: 2, Failed: 1}, counts)
	require.Len(t, results, 3)
	assert.Equal(t, 3, results[2].Row)
	assert.Equal(t, "incorrect_number", results[2].Err.Code)
	assert.ElementsMatch(t, []string{"card_1", "card_2", "card_3"}, tok.seen)
	for i, r := range results {
		assert.Equal(t, i+1, r.Row, "results come in file order")
	}
}

// downTokenizer fails as unavailable from the business key down on.
type downTokenizer struct{ down string }

func (d downTokenizer) Tokenize(_ context.Context, _ vault.Actor, in vault.TokenizeInput) (vault.Token, bool, error) {
	if in.BusinessKey >= d.down {
		return vault.Token{}, false, vault.Errorf(vault.KindUnavailable, vault.CodeServiceUnavailable, "down")
	}
	return vault.Token{BusinessKey: in.BusinessKey}, true, nil
}

func TestImportStopsWhenTheVaultFailsAndReportsOnlyTheRowsBefore(t *testing.T) {
	rd, err := cardfile.NewReader(strings.NewReader(stripeCSV), cardfile.StripeCSV)
	require.NoError(t, err)
	var seen []int
	counts, err := cardfile.Import(context.Background(), downTokenizer{down: "card_2"}, vault.Actor{}, rd, 4, func(r cardfile.Result) error {
		seen = append(seen, r.Row)
		return nil
	})
	assert.Equal(t, vault.KindUnavailable, vault.ErrorKind(err))
	assert.Equal(t, cardfile.Counts{Created: 1}, counts)
	assert.Equal(t, []int{1}, seen, "no row after the failure is reported")
}
