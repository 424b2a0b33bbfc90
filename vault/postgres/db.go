package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

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
// no rows → not found, unique violation → conflict, a lost, refused or
// failed-over connection and a failing server → unavailable (503 with
// Retry-After), anything else → internal. notFound names what was not found.
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
	case errors.As(err, &pgErr) && (isUnavailableSQLState(pgErr.Code) || isStorageFailure(pgErr)):
		return unavailable(err)
	case errors.As(err, new(*pgconn.ConnectError)):
		// no server named by the URL took the connection as a writable
		// primary (down, still starting, all standbys during a failover)
		return unavailable(err)
	case errors.As(err, &netErr), pgconn.SafeToRetry(err), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		// the connection broke mid-statement (the server restarted,
		// crashed or was demoted): the client may retry; a commit's fate is
		// unknown, and business_key idempotency makes the retry safe
		return unavailable(err)
	}
	return vault.Internal(err)
}

func unavailable(err error) *vault.Error {
	return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable, Message: "the vault is temporarily unavailable; retry later", Err: err}
}

// sqlStateReadOnly is read_only_sql_transaction: a write reached a server
// that is (now) a standby, such as a primary demoted by a switchover.
const sqlStateReadOnly = "25006"

// isUnavailableSQLState reports SQLSTATEs that mean the server is going
// away, refusing work or failing: 08 connection exceptions, 53 insufficient
// resources, 57 operator intervention (admin or crash shutdown, starting
// up), 58 system errors (I/O), and 25006 read_only_sql_transaction.
func isUnavailableSQLState(code string) bool {
	if code == sqlStateReadOnly {
		return true
	}
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "08", "53", "57", "58":
		return true
	}
	return false
}

// isStorageFailure reports a server that cannot use its own files: the
// SQLSTATE PostgreSQL gives a file it may not open or write (EACCES,
// EROFS: a data directory made unwritable or remounted read-only by a
// failing disk) is 42501, the one of a missing privilege, but its message
// names the file operation ("could not open file …") rather than an object.
func isStorageFailure(e *pgconn.PgError) bool {
	return e.Code == "42501" && strings.HasPrefix(e.Message, "could not ")
}

// ConnectionUnusable reports whether a server's error means that the
// connection it came on can no longer serve the vault, so that a pool should
// close it and connect again (to the new primary, with
// target_session_attrs=read-write): the server is a standby now (25006),
// is shutting down or restarting (57P01–57P03), or fails on its own files
// (class 58, storage 42501). Other errors leave the connection usable.
func ConnectionUnusable(e *pgconn.PgError) bool {
	switch {
	case e.Code == sqlStateReadOnly, isStorageFailure(e):
		return true
	case strings.HasPrefix(e.Code, "57P"), strings.HasPrefix(e.Code, "58"):
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
