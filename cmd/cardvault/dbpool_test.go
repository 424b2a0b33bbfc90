package main

import (
	"context"
	"strings"
	"testing"

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
