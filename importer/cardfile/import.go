package cardfile

import (
	"context"
	"errors"
	"io"

	"github.com/cardvault/cardvault/vault"
)

// Tokenizer is the vault operation every row goes through: the same
// sealing, fingerprint and business-key idempotency as /cde-import.
type Tokenizer interface {
	Tokenize(ctx context.Context, a vault.Actor, in vault.TokenizeInput) (vault.Token, bool, error)
}

// Result is one row's outcome: its token (Created when new, else the
// business key already had it), or Err, a client-safe error without card
// data.
type Result struct {
	Row     int
	OldID   string
	Token   vault.Token
	Created bool
	Err     *vault.Error
}

// Counts sums an import's rows.
type Counts struct {
	Created, Existing, Failed int
}

// Import tokenizes every row of rows for a, up to workers rows at once
// (so concurrent rows share the vault's batched commits), calling each
// with every row's Result in file order. A malformed or refused row fails
// alone. It returns the counts so far and an error when the file cannot be
// read further, when the vault fails other than on the row (then the run
// can be repeated: the rows done keep their tokens by business key), or
// when each does.
func Import(ctx context.Context, tok Tokenizer, a vault.Actor, rows RowReader, workers int, each func(Result) error) (Counts, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := make(chan *pending, max(workers, 1))
	var readErr error
	go func() {
		defer close(window)
		readErr = feed(ctx, tok, a, rows, window)
	}()
	var c Counts
	var err error
	for p := range window {
		<-p.done
		if err == nil {
			err = p.err
		}
		if err == nil {
			c.add(p.res)
			err = each(p.res)
		}
		if err != nil {
			cancel()
		}
	}
	if err == nil && !errors.Is(readErr, io.EOF) {
		err = readErr
	}
	return c, err
}

// pending is a row being tokenized; done closes once res or err is set.
type pending struct {
	done chan struct{}
	res  Result
	err  error
}

// feed reads rows and starts each one's tokenization, in order onto
// window, until the file ends (io.EOF), it fails, or ctx ends.
func feed(ctx context.Context, tok Tokenizer, a vault.Actor, rows RowReader, window chan<- *pending) error {
	for {
		row, err := rows.Next()
		if err != nil {
			return err
		}
		p := &pending{done: make(chan struct{})}
		select {
		case window <- p:
		case <-ctx.Done():
			return ctx.Err()
		}
		go func() {
			defer close(p.done)
			p.res, p.err = tokenizeRow(ctx, tok, a, row)
		}()
	}
}

// tokenizeRow tokenizes one row; an error of the row's own (invalid card
// data, a conflict) is its Result's Err, any other is returned.
func tokenizeRow(ctx context.Context, tok Tokenizer, a vault.Actor, row Row) (Result, error) {
	res := Result{Row: row.N, OldID: row.OldID}
	if row.Err != nil {
		res.Err = vault.AsError(row.Err)
		return res, nil
	}
	t, created, err := tok.Tokenize(ctx, a, row.Input)
	if err != nil {
		ve := vault.AsError(err)
		if ve.Kind != vault.KindInvalid && ve.Kind != vault.KindConflict && ve.Kind != vault.KindBadRequest {
			return res, err
		}
		res.Err = ve
		return res, nil
	}
	res.Token, res.Created = t, created
	return res, nil
}

func (c *Counts) add(r Result) {
	switch {
	case r.Err != nil:
		c.Failed++
	case r.Created:
		c.Created++
	default:
		c.Existing++
	}
}
