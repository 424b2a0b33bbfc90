package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
