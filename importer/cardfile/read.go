package cardfile

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// RowReader returns a file's rows one at a time.
type RowReader interface {
	// Next returns the next row (a malformed one with Row.Err set), io.EOF
	// after the last, or another error when the file cannot be read
	// further: its framing is broken, or the stream under it failed.
	Next() (Row, error)
}

// NewReader returns a RowReader of the file r in format f.
func NewReader(r io.Reader, f Format) (RowReader, error) {
	switch f {
	case StripeCSV:
		return newCSVReader(r), nil
	case StripeJSON:
		return &jsonReader{dec: json.NewDecoder(r)}, nil
	case JSONL:
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), maxLine)
		return &jsonlReader{sc: sc}, nil
	}
	_, err := ParseFormat(string(f))
	return nil, err
}

// maxLine is the longest jsonl line (or CSV row) accepted.
const maxLine = 1 << 20

// csvReader reads stripe-csv.
type csvReader struct {
	r      *csv.Reader
	header map[string]int
	n      int
}

func newCSVReader(r io.Reader) *csvReader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	return &csvReader{r: cr}
}

// Next returns the next CSV row after the header.
func (c *csvReader) Next() (Row, error) {
	if c.header == nil {
		if err := c.readHeader(); err != nil {
			return Row{}, err
		}
	}
	rec, err := c.r.Read()
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return Row{}, io.EOF
	case errors.As(err, &pe) && pe.Err != nil && !isStreamError(pe.Err):
		c.n++
		return Row{N: c.n, Err: rowError("the row is not valid CSV")}, nil
	case err != nil:
		return Row{}, err
	}
	c.n++
	return c.card(rec).row(c.n), nil
}

// isStreamError reports whether err came from the stream under the CSV,
// not from its syntax.
func isStreamError(err error) bool {
	return !errors.Is(err, csv.ErrBareQuote) && !errors.Is(err, csv.ErrQuote) && !errors.Is(err, csv.ErrFieldCount)
}

// readHeader reads the column names.
func (c *csvReader) readHeader() error {
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return fileError(0, "the file is empty: no header row")
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && !isStreamError(pe.Err) {
			return fileError(0, "the header row is not valid CSV")
		}
		return err
	}
	c.header = make(map[string]int, len(rec))
	for i, name := range rec {
		c.header[strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))] = i
	}
	if _, ok := c.header["card.number"]; !ok {
		return fileError(0, "the header row has no card.number column")
	}
	return nil
}

// card returns the row's fields by column name.
func (c *csvReader) card(rec []string) stripeCard {
	get := func(name string) string {
		if i, ok := c.header[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	return stripeCard{customer: get("id"), defaultSource: get("default_source"), id: get("card.id"),
		number: get("card.number"), expMonth: get("card.exp_month"), expYear: get("card.exp_year"),
		name: get("card.name"), transactionIDs: splitIDs(get("card.transaction_ids"))}
}

// splitIDs reads a cell of transaction ids: a JSON array of strings, or a
// comma-separated list.
func splitIDs(cell string) []string {
	if cell == "" {
		return nil
	}
	var ids []string
	if strings.HasPrefix(cell, "[") && json.Unmarshal([]byte(cell), &ids) == nil {
		return ids
	}
	return strings.Split(cell, ",")
}

// flexString is a JSON string or number, kept as its text.
type flexString string

// UnmarshalJSON takes a string, a number or null.
func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}

// stripeJSONRow is one card of stripe-json.
type stripeJSONRow struct {
	ID            flexString `json:"id"`
	DefaultSource flexString `json:"default_source"`
	Card          *struct {
		ID             flexString   `json:"id"`
		Number         flexString   `json:"number"`
		ExpMonth       flexString   `json:"exp_month"`
		ExpYear        flexString   `json:"exp_year"`
		Name           flexString   `json:"name"`
		TransactionIDs []flexString `json:"transaction_ids"`
	} `json:"card"`
}

// jsonReader reads stripe-json.
type jsonReader struct {
	dec     *json.Decoder
	started bool
	n       int
}

// Next returns the next object of the array.
func (j *jsonReader) Next() (Row, error) {
	if !j.started {
		j.started = true
		if err := j.skipArrayStart(); err != nil {
			return Row{}, err
		}
	}
	if !j.dec.More() {
		if _, err := j.dec.Token(); err != nil { // the closing ']'
			return Row{}, j.streamError(err)
		}
		return Row{}, io.EOF
	}
	var raw stripeJSONRow
	err := j.dec.Decode(&raw)
	if err != nil && !isTypeError(err) {
		return Row{}, j.streamError(err)
	}
	j.n++
	if err != nil || raw.Card == nil {
		return Row{N: j.n, Err: rowError("the row is not a card object of Stripe's export")}, nil
	}
	c := stripeCard{customer: string(raw.ID), defaultSource: string(raw.DefaultSource), id: string(raw.Card.ID),
		number: string(raw.Card.Number), expMonth: string(raw.Card.ExpMonth), expYear: string(raw.Card.ExpYear),
		name: string(raw.Card.Name)}
	for _, id := range raw.Card.TransactionIDs {
		c.transactionIDs = append(c.transactionIDs, string(id))
	}
	return c.row(j.n), nil
}

// skipArrayStart consumes the '[' the file starts with.
func (j *jsonReader) skipArrayStart() error {
	tok, err := j.dec.Token()
	if err != nil {
		return j.streamError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fileError(0, "stripe-json must be a JSON array of card objects")
	}
	return nil
}

// streamError maps a decoder error: a syntax error is the file's, others
// (the stream under it) are returned as they are.
func (j *jsonReader) streamError(err error) error {
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return fileError(j.n, "the file is not valid JSON")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fileError(j.n, "the JSON ends early")
	}
	return err
}

// isTypeError reports a value of the wrong JSON type, after which the
// decoder can go on.
func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// jsonlRow is one line of jsonl: the /cde-import body without cvc.
type jsonlRow struct {
	Metadata map[string]string `json:"metadata"`
	Card     *struct {
		Number   flexString `json:"number"`
		ExpMonth flexString `json:"exp_month"`
		ExpYear  flexString `json:"exp_year"`
		Name     flexString `json:"name"`
		CVC      flexString `json:"cvc"`
	} `json:"card"`
}

// jsonlReader reads jsonl; rows are numbered by line.
type jsonlReader struct {
	sc *bufio.Scanner
	n  int
}

// Next returns the next non-blank line's row.
func (j *jsonlReader) Next() (Row, error) {
	for j.sc.Scan() {
		j.n++
		line := strings.TrimSpace(j.sc.Text())
		if line == "" {
			continue
		}
		return j.row(line), nil
	}
	if err := j.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Row{}, fileError(j.n, "a line longer than 1 MiB")
		}
		return Row{}, err
	}
	return Row{}, io.EOF
}

// row parses one line.
func (j *jsonlReader) row(line string) Row {
	var raw jsonlRow
	if err := json.Unmarshal([]byte(line), &raw); err != nil || raw.Card == nil {
		return Row{N: j.n, Err: rowError("the line is not a card object")}
	}
	if raw.Card.CVC != "" {
		return Row{N: j.n, Err: rowError("a card file never carries a CVC")}
	}
	r := Row{N: j.n, OldID: raw.Metadata["business_key"]}
	r.Input.BusinessKey = r.OldID
	r.Input.Metadata = make(map[string]string, len(raw.Metadata))
	for k, v := range raw.Metadata {
		if k != "business_key" {
			r.Input.Metadata[k] = v
		}
	}
	r.Input.Card.Number, r.Input.Card.ExpMonth = string(raw.Card.Number), string(raw.Card.ExpMonth)
	r.Input.Card.ExpYear, r.Input.Card.Name = string(raw.Card.ExpYear), string(raw.Card.Name)
	return r
}
