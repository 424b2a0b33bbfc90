package main

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

func TestNewPoolSize(t *testing.T) {
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	tests := []struct {
		name string
		url  string
		want int32
	}{
		{"default", dbURL, defaultPoolMaxConns},
		{"pool_max_conns in the URL wins", dbURL + sep + "pool_max_conns=7", 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := newPool(context.Background(), tc.url)
			require.NoError(t, err)
			defer pool.Close()
			assert.Equal(t, tc.want, pool.Config().MaxConns)
			require.NoError(t, pool.Ping(context.Background()))
		})
	}
}

// TestPoolUUIDRoundTrip proves the binary uuid codec of newPool's
// connections against what PostgreSQL itself makes of the values: plain,
// nullable and array uuids, both ways.
func TestPoolUUIDRoundTrip(t *testing.T) {
	ctx := context.Background()
	pool, err := newPool(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	id := uuid.MustParse("0b5e3b8e-7c1a-4d9e-9a43-2f1f6c0d8a11")
	tests := []struct {
		name, typ string
		arg       any
		want      string // the value as PostgreSQL prints it
	}{
		{"uuid", "uuid", id, id.String()},
		{"pointer", "uuid", &id, id.String()},
		{"nil pointer", "uuid", (*uuid.UUID)(nil), "<null>"},
		{"array", "uuid[]", []uuid.UUID{id, uuid.Nil}, "{" + id.String() + "," + uuid.Nil.String() + "}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var text string
			require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce($1::`+tc.typ+`::text, '<null>')`, tc.arg).Scan(&text))
			assert.Equal(t, tc.want, text)
		})
	}
	var got uuid.UUID
	var ptr, null *uuid.UUID
	var arr []uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `SELECT $1::uuid, $1::uuid, NULL::uuid, ARRAY[$1::uuid]`, id.String()).
		Scan(&got, &ptr, &null, &arr))
	assert.Equal(t, id, got)
	require.NotNil(t, ptr)
	assert.Equal(t, id, *ptr)
	assert.Nil(t, null)
	assert.Equal(t, []uuid.UUID{id}, arr)
	assert.Error(t, pool.QueryRow(ctx, `SELECT NULL::uuid`).Scan(&got), "NULL does not scan into a uuid.UUID")
}

// TestPoolDropsAConnectionWhoseServerTurnedReadOnly: after a switchover
// the old primary's connections reach a standby and every write fails with
// 25006; the pool must close such a connection at its first error, and its
// idle ones (they reach the same server), rather than hand them out again.
// A session made read-only plays the demoted server.
func TestPoolDropsAConnectionWhoseServerTurnedReadOnly(t *testing.T) {
	ctx := context.Background()
	pool, err := newPool(ctx, withParam(dbURL, "pool_max_conns", "2"))
	require.NoError(t, err)
	defer pool.Close()
	demoted, idle := acquire(t, pool), acquire(t, pool)
	before := map[uint32]bool{demoted.Conn().PgConn().PID(): true, idle.Conn().PgConn().PID(): true}
	idle.Release()
	_, err = demoted.Exec(ctx, `SET default_transaction_read_only = on`)
	require.NoError(t, err)
	_, err = demoted.Exec(ctx, `CREATE TABLE pool_probe (i int)`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "25006", pgErr.Code)
	demoted.Release()

	require.Eventually(t, func() bool { return pool.Stat().TotalConns() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the demoted connection and the idle one are closed")
	for range 2 {
		c := acquire(t, pool)
		defer c.Release()
		assert.False(t, before[c.Conn().PgConn().PID()], "a connection from before the error is handed out again")
		var readOnly string
		require.NoError(t, c.QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&readOnly))
		assert.Equal(t, "off", readOnly)
	}
}

// acquire takes a connection from pool.
func acquire(t *testing.T, pool *pgxpool.Pool) *pgxpool.Conn {
	t.Helper()
	c, err := pool.Acquire(context.Background())
	require.NoError(t, err)
	return c
}

func TestKeepConnection(t *testing.T) {
	tests := []struct {
		severity, code string
		want           bool
	}{
		{"FATAL", "57P01", false},
		{"FATAL", "28000", false},
		{"ERROR", "25006", false},
		{"ERROR", "58030", false},
		{"ERROR", "23505", true},
		{"ERROR", "40P01", true},
	}
	for _, tt := range tests {
		t.Run(tt.severity+" "+tt.code, func(t *testing.T) {
			assert.Equal(t, tt.want, keepConnection(nil, &pgconn.PgError{Severity: tt.severity, Code: tt.code}))
		})
	}
}

// TestPoolOnSeveralHosts names a closed port before the test server, as a
// URL does when its first server is down: connections go to the next one
// that is a writable primary, and when none is (every server a standby, as
// during a failover) connecting fails with a ConnectError, which the
// service answers 503.
func TestPoolOnSeveralHosts(t *testing.T) {
	ctx := context.Background()
	closed, err := e2e.FreePort()
	require.NoError(t, err)
	readOnly := emptyDatabase(t)
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{databaseName(t, readOnly)}.Sanitize()+` SET default_transaction_read_only = on`)
	conn.Close(ctx)
	require.NoError(t, err)

	tests := []struct {
		name, url    string
		wantReadOnly bool // every server is a standby: no connection
	}{
		{"first host down", withClosedHostFirst(t, dbURL, closed), false},
		{"first host down, target_session_attrs given", withParam(withClosedHostFirst(t, dbURL, closed), "target_session_attrs", "read-write"), false},
		{"no writable primary", withClosedHostFirst(t, readOnly, closed), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := newPool(ctx, tt.url)
			require.NoError(t, err)
			defer pool.Close()
			require.NotNil(t, pool.Config().ConnConfig.ValidateConnect, "several hosts: only a writable primary is taken")
			err = pool.Ping(ctx)
			if !tt.wantReadOnly {
				require.NoError(t, err)
				return
			}
			require.ErrorAs(t, err, new(*pgconn.ConnectError))
			assert.True(t, errors.Is(err, pgconn.ErrReadOnlyConnection), "%v", err)
		})
	}
}

// withParam returns u with the query parameter k=v added.
func withParam(u, k, v string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + k + "=" + v
}

// withClosedHostFirst returns u naming 127.0.0.1:closed before its own
// host and port.
func withClosedHostFirst(t *testing.T, u string, closed int) string {
	t.Helper()
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	parsed.Host = "127.0.0.1:" + strconv.Itoa(closed) + "," + parsed.Host
	return parsed.String()
}

// databaseName returns the database a URL names.
func databaseName(t *testing.T, u string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(u)
	require.NoError(t, err)
	return cfg.Database
}
