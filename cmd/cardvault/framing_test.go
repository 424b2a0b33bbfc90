package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestARequestWithBothLengthHeadersClosesTheConnection(t *testing.T) {
	sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), config{KEKURI: "local:///test/kek.json",
		Cryptoperiod: 365 * 24 * time.Hour, KeyRefresh: time.Second})
	tests := []struct {
		name    string
		headers string
		closes  bool
	}{
		{"both Content-Length and Transfer-Encoding", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", true},
		{"both, in the other order and case", "transfer-encoding: chunked\r\ncontent-length: 40\r\n", true},
		{"Transfer-Encoding alone", "Transfer-Encoding: chunked\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", sv.addr)
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
			req := "POST /tokens HTTP/1.1\r\nHost: vault\r\nContent-Type: application/json\r\n" + tt.headers + "\r\n0\r\n\r\n"
			_, err = io.WriteString(conn, req)
			require.NoError(t, err)
			r := bufio.NewReader(conn)
			res, err := http.ReadResponse(r, nil)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "answered first")
			assert.Equal(t, tt.closes, res.Close, "Connection: close")
			_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: vault\r\n\r\n")
			if err == nil {
				_, err = http.ReadResponse(r, nil)
			}
			if tt.closes {
				assert.Error(t, err, "the connection is closed after the answer")
			} else {
				assert.NoError(t, err, "the connection stays open")
			}
		})
	}
}

func TestHelpNeverPrintsSecretsFromTheEnvironment(t *testing.T) {
	const password, stripeKey = "s3cr3t-db-pw", "sk_live_s3cr3tStripeKey"
	t.Setenv("VAULT_DATABASE_URL", "postgres://vault:"+password+"@127.0.0.1:5432/vault")
	t.Setenv("STRIPE_API_KEY", stripeKey)
	t.Setenv("VAULT_PUBLIC_URL", "https://user:"+password+"@vault.example.com")
	for _, args := range [][]string{{"serve", "--help"}, {"dev", "--help"}, {"import", "stripe", "--help"}, {"tenant", "list", "--help"}, {"migrate", "--help"}} {
		out, errOut, err := run(t, args...)
		require.NoError(t, err, strings.Join(args, " "))
		for _, secret := range []string{password, stripeKey} {
			assert.NotContains(t, out+errOut, secret, strings.Join(args, " "))
		}
		assert.Contains(t, out, "--", "help was printed")
	}
}

func TestStartingBackfillsTheKeyVersionsOfOldTenants(t *testing.T) {
	db := migratedDatabase(t)
	_, kek := vaulttest.KEK(t)
	out, _, err := run(t, "tenant", "create", "old-tenant", "--database-url", db, "--kek-uri", kek)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)
	pool := vaulttest.Pool(t, db)
	ctx := context.Background()
	for _, q := range []string{`DELETE FROM tenant_key_versions WHERE tenant_id = $1`, `DELETE FROM tenant_sealing_keys WHERE tenant_id = $1`} {
		_, err := pool.Exec(ctx, q, tenant)
		require.NoError(t, err)
	}
	_, _, err = run(t, "tenant", "list", "--database-url", db, "--kek-uri", kek)
	require.NoError(t, err)
	var versions, sealing int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenant_key_versions WHERE tenant_id = $1),
		(SELECT count(*) FROM tenant_sealing_keys WHERE tenant_id = $1)`, tenant).Scan(&versions, &sealing))
	assert.Equal(t, 2, versions, "a data and a fingerprint key")
	assert.Equal(t, 1, sealing, "the data key may seal again")
}

// TestFramingWatchSeesHeadersSplitAcrossReads: the watch judges a header
// block the same however the stream was cut into reads, a line longer than
// it keeps included.
func TestFramingWatchSeesHeadersSplitAcrossReads(t *testing.T) {
	long := "X-Padding: " + strings.Repeat("a", 3*maxWatchedLine) + "\r\n"
	tests := []struct {
		name, stream string
		ambiguous    bool
	}{
		{"both", "POST / HTTP/1.1\r\nContent-Length: 5\r\n" + long + "TRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n", true},
		{"bare line feeds", "POST / HTTP/1.1\ncontent-length: 5\ntransfer-encoding: chunked\n\n", true},
		{"in two blocks", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"a long line naming neither", "POST / HTTP/1.1\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" + long + "\r\n", false},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 3, 17, len(tt.stream)} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, size), func(t *testing.T) {
				c := &framingConn{}
				for b := []byte(tt.stream); len(b) > 0; b = b[min(size, len(b)):] {
					c.watch(b[:min(size, len(b))])
				}
				assert.Equal(t, tt.ambiguous, c.ambiguous.Load())
			})
		}
	}
}
