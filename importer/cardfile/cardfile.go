// Package cardfile reads card files in the formats the vault imports and
// exports: Stripe's PAN export (stripe-json, stripe-csv) and jsonl, one
// /cde-import body (without cvc) per line. It reads clear bytes from a
// stream, one row at a time, and never keeps more than the current row.
//
// Stripe's PAN export fields are those Stripe documents for the export it
// sends a PCI Level 1 receiver: the customer's id, name and email, and per
// card card.id, card.number, card.exp_month, card.exp_year, card.name,
// card.address_*, default_source and card.transaction_ids. Their framing
// is assumed as follows (Stripe does not publish a sample):
//   - stripe-csv: a header row naming the columns with those names, in any
//     order, one card per row; card.transaction_ids a JSON array or a
//     comma-separated list in one cell. Unknown columns are ignored.
//   - stripe-json: a JSON array of objects, one
//     per card: {"id","name","email","default_source","card":{"id",
//     "number","exp_month","exp_year","name","address_…","transaction_ids"}}.
//
// A row becomes a vault.TokenizeInput: business_key = card.id; metadata
// stripe_customer = id, default = "true" when default_source is the card,
// network_transaction_ids = the ids comma-joined. The email, the customer's
// name and the address are never kept.
package cardfile

import (
	"strings"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// Format names a card file layout.
type Format string

// The card file layouts.
const (
	StripeJSON Format = "stripe-json"
	StripeCSV  Format = "stripe-csv"
	JSONL      Format = "jsonl"
)

// ParseFormat returns the format named s, or a KindInvalid error
// (parameter_invalid, param format) for another name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case StripeJSON, StripeCSV, JSONL:
		return f, nil
	}
	return "", vault.InvalidParam(vault.CodeParameterInvalid, "format", "format must be stripe-json, stripe-csv or jsonl")
}

// Metadata keys a Stripe export row keeps.
const (
	MetaCustomer       = "stripe_customer"
	MetaDefault        = "default"
	MetaTransactionIDs = "network_transaction_ids"
)

// Row is one card of a file: its number (1-based, among the file's cards),
// the card's id in the file (the business key) and what to tokenize, or
// Err when the row is malformed. Err never quotes card data.
type Row struct {
	N     int
	OldID string
	Input vault.TokenizeInput
	Err   error
}

// stripeCard is a Stripe export row's fields by their documented names.
type stripeCard struct {
	customer, defaultSource             string
	id, number, expMonth, expYear, name string
	transactionIDs                      []string
}

// row returns the Row of c.
func (c stripeCard) row(n int) Row {
	r := Row{N: n, OldID: c.id}
	if c.id == "" {
		r.Err = rowError("card.id is missing")
		return r
	}
	meta := map[string]string{}
	if c.customer != "" {
		meta[MetaCustomer] = c.customer
	}
	if c.defaultSource != "" && c.defaultSource == c.id {
		meta[MetaDefault] = "true"
	}
	if ids := joinIDs(c.transactionIDs); ids != "" {
		meta[MetaTransactionIDs] = ids
	}
	r.Input = vault.TokenizeInput{BusinessKey: c.id, Metadata: meta,
		Card: card.CardInput{Number: c.number, ExpMonth: c.expMonth, ExpYear: c.expYear, Name: c.name}}
	return r
}

// joinIDs returns the ids comma-joined, as many whole ids as fit a metadata
// value.
func joinIDs(ids []string) string {
	var b strings.Builder
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if id == "" || b.Len()+len(id)+1 > vault.MaxMetadataValueLen {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	return b.String()
}

// rowError returns the KindInvalid error of a malformed row.
func rowError(format string, args ...any) error {
	return vault.Errorf(vault.KindInvalid, vault.CodeParameterInvalid, format, args...)
}

// fileError returns the KindInvalid error of a file whose framing is broken,
// so no further row can be read; the cause is never quoted.
func fileError(n int, what string) error {
	return vault.Errorf(vault.KindInvalid, vault.CodeInvalidJSON, "%s after row %d", what, n)
}
