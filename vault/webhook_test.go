package vault_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/vaulttest"
)

// BenchmarkTokenize compares a tokenization with a plain INSERT of a
// token-shaped row (one commit each), at the parallelism of issue 6 (32
// goroutines): the round trips the vault adds on its hot path show in the
// ratio of the two. Run: go test ./vault -run '^$' -bench Tokenize.
func BenchmarkTokenize(b *testing.B) {
	svc := vaulttest.NewService(b, dbURL, vaulttest.Options{})
	pool := vaulttest.Pool(b, dbURL)
	b.Run("baseline-insert", func(b *testing.B) {
		tenant, _ := vaulttest.Tenant(b, svc)
		blob := func(n int) []byte { p := make([]byte, n); _, _ = rand.Read(p); return p }
		b.SetParallelism(16) // × GOMAXPROCS 2 = 32 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, err := pool.Exec(context.Background(), `INSERT INTO tokens (id, tenant_id, business_key,
					fingerprint, fingerprint_key_id, key_id, pan_ct, name_ct, cvc_ct, cvc_expires_at, iin, last_four,
					pan_length, scheme, exp_month, exp_year, metadata, created_at, updated_at)
					VALUES ($1, $2, $3, $4, 1, 1, $5, $6, $7, $8, '424242', '4242', 16, 'VISA', 4, 2033, '{}', $8, $8)`,
					uuid.New(), tenant, "pm_"+uuid.NewString(), blob(32), blob(49), blob(41), blob(36), time.Now())
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("tokenize", func(b *testing.B) { benchTokenize(b, svc, vaulttest.Actor(b, svc, tenantSecret(b, svc))) })
}

func tenantSecret(b *testing.B, svc *vault.Service) string {
	_, secret := vaulttest.Tenant(b, svc)
	return secret
}

// benchTokenize tokenizes distinct cards under distinct business keys as a.
func benchTokenize(b *testing.B, svc *vault.Service, a vault.Actor) {
	var n atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			in := vault.TokenizeInput{BusinessKey: fmt.Sprintf("pm_bench_%s_%d", a.TenantID, i), Card: vault.CardInput{
				Number: vaulttest.LuhnNumber("424242", 16, i), ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "John Doe"}}
			if _, _, err := svc.Tokenize(context.Background(), a, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
