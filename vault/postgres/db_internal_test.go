package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/vault"
)

// TestDBErrorKinds holds the one translator to what each driver error
// answers: every failure that a failover, a crash or a failing disk of the
// database causes is unavailable (503 with Retry-After), never internal.
func TestDBErrorKinds(t *testing.T) {
	pgErr := func(code, msg string) error {
		return fmt.Errorf("insert: %w", &pgconn.PgError{Code: code, Message: msg})
	}
	tests := []struct {
		name string
		err  error
		want vault.Kind
	}{
		{"no rows", pgx.ErrNoRows, vault.KindNotFound},
		{"unique violation", pgErr("23505", "duplicate key value"), vault.KindConflict},
		{"write on a demoted primary", pgErr("25006", "cannot execute INSERT in a read-only transaction"), vault.KindUnavailable},
		{"admin shutdown", pgErr("57P01", "terminating connection due to administrator command"), vault.KindUnavailable},
		{"crash shutdown", pgErr("57P02", "terminating connection because of crash of another server process"), vault.KindUnavailable},
		{"starting up", pgErr("57P03", "the database system is starting up"), vault.KindUnavailable},
		{"statement cancelled", pgErr("57014", "canceling statement due to user request"), vault.KindUnavailable},
		{"connection failure", pgErr("08006", "connection failure"), vault.KindUnavailable},
		{"too many connections", pgErr("53300", "sorry, too many clients already"), vault.KindUnavailable},
		{"disk full", pgErr("53100", `could not extend file "base/1/2": No space left on device`), vault.KindUnavailable},
		{"I/O error", pgErr("58030", `could not read block 0 in file "base/1/2": Input/output error`), vault.KindUnavailable},
		{"unwritable data directory", pgErr("42501", `could not open file "base/16384/2601": Permission denied`), vault.KindUnavailable},
		{"read-only file system", pgErr("42501", `could not create file "pg_wal/xlogtemp.1": Read-only file system`), vault.KindUnavailable},
		{"missing privilege", pgErr("42501", "permission denied for table tokens"), vault.KindInternal},
		{"no writable primary among the hosts", &pgconn.ConnectError{}, vault.KindUnavailable},
		{"connection lost mid-statement", fmt.Errorf("commit: %w", io.ErrUnexpectedEOF), vault.KindUnavailable},
		{"request deadline", context.DeadlineExceeded, vault.KindUnavailable},
		{"syntax error", pgErr("42601", "syntax error at or near"), vault.KindInternal},
		{"anything else", errors.New("boom"), vault.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, vault.ErrorKind(dbError(tt.err, "token")))
		})
	}
}

// TestConnectionUnusable holds which server errors make the pool drop the
// connection they came on, so that it connects again to the new primary.
func TestConnectionUnusable(t *testing.T) {
	tests := []struct {
		code, msg string
		want      bool
	}{
		{"25006", "cannot execute INSERT in a read-only transaction", true},
		{"57P01", "terminating connection due to administrator command", true},
		{"57P03", "the database system is not yet accepting connections", true},
		{"58030", "could not write to file", true},
		{"42501", `could not open file "base/1/2": Permission denied`, true},
		{"42501", "permission denied for table tokens", false},
		{"23505", "duplicate key value", false},
		{"40P01", "deadlock detected", false},
		{"57014", "canceling statement due to statement timeout", false},
		{"53300", "sorry, too many clients already", false},
	}
	for _, tt := range tests {
		t.Run(tt.code+" "+tt.msg, func(t *testing.T) {
			assert.Equal(t, tt.want, ConnectionUnusable(&pgconn.PgError{Code: tt.code, Message: tt.msg}))
		})
	}
}
