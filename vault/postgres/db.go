package postgres

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/cardvault/cardvault/vault"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// querier is what both a pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ querier = (*pgxpool.Pool)(nil)
	_ querier = (pgx.Tx)(nil)
)

// dbError translates a driver error into a domain error, in one place:
// no rows → not found, unique violation → conflict, a lost or refused
// connection → unavailable, anything else → internal. notFound names what was
// not found.
func dbError(err error, notFound string) error {
	var pgErr *pgconn.PgError
	var netErr net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*vault.Error)):
		return err
	case errors.Is(err, pgx.ErrNoRows):
		return &vault.Error{Kind: vault.KindNotFound, Code: vault.CodeResourceMissing, Message: "no such " + notFound, Err: err}
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return &vault.Error{Kind: vault.KindConflict, Code: vault.CodeConflict, Message: notFound + " already exists", Err: err}
	case isSealingKeyViolation(err):
		// the key that sealed the row was retired meanwhile (a replica's
		// cached keys were stale); the retried request seals with the
		// current keys
		return keysChanging(err)
	case errors.As(err, &pgErr) && isUnavailableSQLState(pgErr.Code):
		return unavailable(err)
	case errors.As(err, &netErr), pgconn.SafeToRetry(err), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// the connection broke mid-statement (the server restarted or
		// crashed): the client may retry; a commit's fate is unknown, and
		// business_key idempotency makes the retry safe
		return unavailable(err)
	}
	return vault.Internal(err)
}

func unavailable(err error) *vault.Error {
	return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable, Message: "the vault is temporarily unavailable; retry later", Err: err}
}

// isUnavailableSQLState reports SQLSTATE classes that mean the server is
// going away or refusing work: 08 connection exceptions, 57P admin shutdown,
// 53 insufficient resources.
func isUnavailableSQLState(code string) bool {
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "08", "53", "57":
		return true
	}
	return false
}

// inTx runs fn in a transaction and commits it; any error rolls back. The
// returned error is translated by dbError unless fn already returned a domain
// error.
func (s *Service) inTx(ctx context.Context, notFound string, fn func(tx pgx.Tx) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return dbError(err, notFound)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return dbError(err, notFound)
	}
	return dbError(tx.Commit(ctx), notFound)
}

// isDeadlock reports whether err is PostgreSQL breaking a deadlock
// (40P01) or a serialization failure (40001): the transaction rolled back
// and may be retried.
func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
