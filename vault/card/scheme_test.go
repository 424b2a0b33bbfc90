package card

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDetectScheme(t *testing.T) {
	tests := []struct {
		prefix string
		want   Scheme
	}{
		{"4", SchemeVisa},
		{"4000", SchemeVisa},
		{"34", SchemeAmex},
		{"37", SchemeAmex},
		{"35", SchemeUnknown},
		{"51", SchemeMastercard},
		{"55", SchemeMastercard},
		{"2220", SchemeUnknown},
		{"2221", SchemeMastercard},
		{"2720", SchemeMastercard},
		{"2721", SchemeUnknown},
		{"6011", SchemeDiscover},
		{"6012", SchemeUnknown},
		{"622125", SchemeUnionPay},
		{"622126", SchemeDiscover},
		{"622925", SchemeDiscover},
		{"622926", SchemeUnionPay},
		{"643", SchemeUnknown},
		{"644", SchemeDiscover},
		{"649", SchemeDiscover},
		{"65", SchemeDiscover},
		{"300", SchemeDiners},
		{"305", SchemeDiners},
		{"306", SchemeUnknown},
		{"309", SchemeDiners},
		{"36", SchemeDiners},
		{"38", SchemeDiners},
		{"39", SchemeDiners},
		{"3527", SchemeUnknown},
		{"3528", SchemeJCB},
		{"3589", SchemeJCB},
		{"3590", SchemeUnknown},
		{"62", SchemeUnionPay},
		{"6200", SchemeUnionPay},
		{"81", SchemeUnionPay},
		{"50", SchemeMaestro},
		{"56", SchemeMaestro},
		{"58", SchemeMaestro},
		{"59", SchemeUnknown},
		{"6304", SchemeMaestro},
		{"6390", SchemeMaestro},
		{"6759", SchemeMaestro},
		{"676770", SchemeMaestro},
		{"676774", SchemeMaestro},
		{"67", SchemeMaestro},
		{"1", SchemeUnknown},
		{"9", SchemeUnknown},
		{"", SchemeUnknown},
		{"x4", SchemeUnknown},
		{" 4", SchemeUnknown},
		{"4x", SchemeVisa},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, DetectScheme(tt.prefix), "prefix %q", tt.prefix)
	}
}

// TestSchemeTableOrder checks that no IIN range shadows a later one except
// the documented Discover co-brand inside UnionPay's 62.
func TestSchemeTableOrder(t *testing.T) {
	for i, r := range iinTable {
		lo := itoaPad(r.lo, r.width)
		assert.Equal(t, r.scheme, DetectScheme(lo), "row %d low end", i)
		assert.Equal(t, r.scheme, DetectScheme(itoaPad(r.hi, r.width)), "row %d high end", i)
	}
}

// itoaPad returns v in decimal, left-padded with zeros to width digits.
func itoaPad(v, width int) string {
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b)
}
