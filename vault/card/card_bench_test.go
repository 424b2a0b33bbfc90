package card_test

import (
	"testing"

	"github.com/cardvault/cardvault/vault/card"
)

// The card work on the tokenize and read paths, per call, beside
// BenchmarkParseCard (card_test.go), BenchmarkParsePAN and BenchmarkMasked
// (pan_test.go). The envelope seal and open and the fingerprint are measured
// in crypto/bench_test.go (BenchmarkSeal, BenchmarkOpen,
// BenchmarkFingerprint). Run:
// go test ./vault/card ./crypto -run '^$' -bench 'Card|PAN|Mask|Seal|Open|Fingerprint' -benchmem

// BenchmarkContainsPAN is the scan that keeps card numbers out of business
// keys, metadata and reasons, run on each of them per request.
func BenchmarkContainsPAN(b *testing.B) {
	for _, s := range []string{"pm_1PgGJ2LkdIwHu7ixN3kRbQ7A", "merchant-initiated charge for order 12345"} {
		b.Run(s[:8], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if card.ContainsPAN(s) {
					b.Fatal("no PAN in " + s)
				}
			}
		})
	}
}

// BenchmarkMaskPANs is the last line of defence of the log handler, run on
// every logged string.
func BenchmarkMaskPANs(b *testing.B) {
	s := `request POST /cde-import 201 req_0123456789abcdef01234567`
	b.ReportAllocs()
	for b.Loop() {
		_ = card.MaskPANs(s)
	}
}
