package card

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseExpiry(t *testing.T) {
	ok := []struct {
		month, year string
		want        Expiry
	}{
		{"04", "2033", Expiry{4, 2033}},
		{"4", "2033", Expiry{4, 2033}},
		{"4", "33", Expiry{4, 2033}},
		{" 04 ", " 2033 ", Expiry{4, 2033}},
		{"\t12\n", "2099", Expiry{12, 2099}},
		{"1", "2000", Expiry{1, 2000}},
		{"01", "00", Expiry{1, 2000}},
		{"12", "99", Expiry{12, 2099}},
		{"6", "2001", Expiry{6, 2001}}, // past dates are kept
	}
	for _, tt := range ok {
		got, err := ParseExpiry(tt.month, tt.year)
		require.NoError(t, err, "%q/%q", tt.month, tt.year)
		assert.Equal(t, tt.want, got, "%q/%q", tt.month, tt.year)
	}
}

func TestParseExpiryRejects(t *testing.T) {
	const (
		monthCode, monthParam = "invalid_expiry_month", "card.exp_month"
		yearCode, yearParam   = "invalid_expiry_year", "card.exp_year"
		monthRequired         = "card expiry month is required"
		monthRange            = "card expiry month must be a number from 1 to 12"
		yearRequired          = "card expiry year is required"
		yearRange             = "card expiry year must be 2 digits or 4 digits from 2000 to 2099"
	)
	tests := []struct {
		month, year, code, param, msg string
	}{
		{"", "2033", monthCode, monthParam, monthRequired},
		{"  ", "2033", monthCode, monthParam, monthRequired},
		{"0", "2033", monthCode, monthParam, monthRange},
		{"00", "2033", monthCode, monthParam, monthRange},
		{"13", "2033", monthCode, monthParam, monthRange},
		{"004", "2033", monthCode, monthParam, monthRange},
		{"-4", "2033", monthCode, monthParam, monthRange},
		{"+4", "2033", monthCode, monthParam, monthRange},
		{"4.0", "2033", monthCode, monthParam, monthRange},
		{"April", "2033", monthCode, monthParam, monthRange},
		{"0 4", "2033", monthCode, monthParam, monthRange},
		{"13", "", monthCode, monthParam, monthRange}, // month is checked first
		{"04", "", yearCode, yearParam, yearRequired},
		{"04", " ", yearCode, yearParam, yearRequired},
		{"04", "1999", yearCode, yearParam, yearRange},
		{"04", "2100", yearCode, yearParam, yearRange},
		{"04", "203", yearCode, yearParam, yearRange},
		{"04", "3", yearCode, yearParam, yearRange},
		{"04", "02033", yearCode, yearParam, yearRange},
		{"04", "20 33", yearCode, yearParam, yearRange},
		{"04", "-33", yearCode, yearParam, yearRange},
		{"04", "２０３３", yearCode, yearParam, yearRange},
	}
	for _, tt := range tests {
		t.Run(tt.month+"/"+tt.year, func(t *testing.T) {
			got, err := ParseExpiry(tt.month, tt.year)
			assert.Equal(t, Expiry{}, got)
			e := requireCardError(t, err, tt.code, tt.param, tt.month+" "+tt.year)
			assert.Equal(t, tt.msg, e.Message)
		})
	}
}

func TestExpiryString(t *testing.T) {
	assert.Equal(t, "04/2033", Expiry{4, 2033}.String())
	assert.Equal(t, "12/2099", Expiry{12, 2099}.String())
	assert.Equal(t, "", Expiry{}.String())
	assert.True(t, Expiry{}.IsZero())
	assert.False(t, Expiry{4, 2033}.IsZero())
}
