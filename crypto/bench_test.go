package crypto_test

import (
	"testing"

	"github.com/cardvault/cardvault/crypto"
)

func BenchmarkSeal(b *testing.B) {
	s := newSealer(b, newDataKeyset(b))
	pt, ad := []byte(samplePAN), crypto.FieldAD(tenantA, tokenA, "number")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(pt, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := newSealer(b, newDataKeyset(b))
	ad := crypto.FieldAD(tenantA, tokenA, "number")
	c := seal(b, s, []byte(samplePAN), ad)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(c, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	f := newFingerprinter(b, newFingerprintKeyset(b))
	pt := []byte(samplePAN)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Sum(pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrapKeyset(b *testing.B) {
	kek := newLocalKEK(b)
	wrapped := wrap(b, newDataKeyset(b), kek, tenantA, crypto.PurposeData)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := crypto.UnwrapKeyset(wrapped, kek, tenantA, crypto.PurposeData); err != nil {
			b.Fatal(err)
		}
	}
}
