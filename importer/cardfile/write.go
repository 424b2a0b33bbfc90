package cardfile

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"

	"github.com/cardvault/cardvault/vault"
)

// RowWriter writes cards in one of the formats, so that NewReader reads
// them back as the same rows.
type RowWriter interface {
	// Write writes one token's card; it returns the writer's error.
	Write(r vault.Revealed) error
	// Close ends the file (the JSON array, the CSV buffer); it does not
	// close the writer under it.
	Close() error
}

// NewWriter returns a RowWriter of format f onto w.
func NewWriter(w io.Writer, f Format) (RowWriter, error) {
	switch f {
	case StripeCSV:
		cw := csv.NewWriter(w)
		return &csvWriter{w: cw}, cw.Write(csvColumns)
	case StripeJSON:
		_, err := io.WriteString(w, "[")
		return &jsonWriter{w: w}, err
	case JSONL:
		return &jsonlWriter{enc: json.NewEncoder(w)}, nil
	}
	_, err := ParseFormat(string(f))
	return nil, err
}

// csvColumns are the stripe-csv columns an export writes: Stripe's names,
// without the customer's name, email and address, which the vault never
// keeps.
var csvColumns = []string{"id", "card.id", "card.number", "card.exp_month", "card.exp_year", "card.name",
	"default_source", "card.transaction_ids"}

// exported is a token's card in Stripe's terms.
type exported struct {
	customer, cardID, number, expMonth, expYear, name, defaultSource string
	transactionIDs                                                   []string
}

// export returns r in Stripe's terms: card.id is the business key (the
// token id when it has none).
func export(r vault.Revealed) exported {
	e := exported{customer: r.Token.Metadata[MetaCustomer], cardID: r.Token.BusinessKey,
		number: r.Card.PAN.Reveal(), expMonth: strconv.Itoa(r.Card.Expiry.Month),
		expYear: strconv.Itoa(r.Card.Expiry.Year), name: r.Card.Name}
	if e.cardID == "" {
		e.cardID = r.Token.ID.String()
	}
	if r.Token.Metadata[MetaDefault] == "true" {
		e.defaultSource = e.cardID
	}
	if ids := r.Token.Metadata[MetaTransactionIDs]; ids != "" {
		e.transactionIDs = strings.Split(ids, ",")
	}
	return e
}

type csvWriter struct{ w *csv.Writer }

// Write writes one CSV row.
func (c *csvWriter) Write(r vault.Revealed) error {
	e := export(r)
	ids := ""
	if len(e.transactionIDs) > 0 {
		b, _ := json.Marshal(e.transactionIDs)
		ids = string(b)
	}
	return c.w.Write([]string{e.customer, e.cardID, e.number, e.expMonth, e.expYear, e.name, e.defaultSource, ids})
}

// Close flushes the CSV.
func (c *csvWriter) Close() error {
	c.w.Flush()
	return c.w.Error()
}

type jsonWriter struct {
	w io.Writer
	n int
}

// stripeJSONOut is one card of stripe-json as written.
type stripeJSONOut struct {
	ID            string `json:"id,omitempty"`
	DefaultSource string `json:"default_source,omitempty"`
	Card          struct {
		ID             string   `json:"id"`
		Number         string   `json:"number"`
		ExpMonth       int      `json:"exp_month"`
		ExpYear        int      `json:"exp_year"`
		Name           string   `json:"name,omitempty"`
		TransactionIDs []string `json:"transaction_ids,omitempty"`
	} `json:"card"`
}

// Write writes one array element.
func (j *jsonWriter) Write(r vault.Revealed) error {
	e := export(r)
	var o stripeJSONOut
	o.ID, o.DefaultSource = e.customer, e.defaultSource
	o.Card.ID, o.Card.Number, o.Card.Name, o.Card.TransactionIDs = e.cardID, e.number, e.name, e.transactionIDs
	o.Card.ExpMonth, o.Card.ExpYear = r.Card.Expiry.Month, r.Card.Expiry.Year
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	sep := ",\n"
	if j.n == 0 {
		sep = "\n"
	}
	j.n++
	if _, err := io.WriteString(j.w, sep); err != nil {
		return err
	}
	_, err = j.w.Write(b)
	return err
}

// Close ends the array.
func (j *jsonWriter) Close() error {
	_, err := io.WriteString(j.w, "\n]\n")
	return err
}

type jsonlWriter struct{ enc *json.Encoder }

// jsonlOut is one line of jsonl as written.
type jsonlOut struct {
	Metadata map[string]string `json:"metadata"`
	Card     struct {
		Number   string `json:"number"`
		ExpMonth int    `json:"exp_month"`
		ExpYear  int    `json:"exp_year"`
		Name     string `json:"name,omitempty"`
	} `json:"card"`
}

// Write writes one line: the token's metadata with its business key.
func (j *jsonlWriter) Write(r vault.Revealed) error {
	var o jsonlOut
	o.Metadata = make(map[string]string, len(r.Token.Metadata)+1)
	for k, v := range r.Token.Metadata {
		o.Metadata[k] = v
	}
	o.Metadata["business_key"] = export(r).cardID
	o.Card.Number, o.Card.Name = r.Card.PAN.Reveal(), r.Card.Name
	o.Card.ExpMonth, o.Card.ExpYear = r.Card.Expiry.Month, r.Card.Expiry.Year
	return j.enc.Encode(o)
}

// Close has nothing to end.
func (j *jsonlWriter) Close() error { return nil }
