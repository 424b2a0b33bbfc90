package forwarding

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// Public test cards (testdata/cards.json).
const (
	visaPAN = "4242424242424242"
	amexPAN = "378282246310005"
	mcPAN   = "5555555555554444"
)

// testCard returns a parsed test card.
func testCard(t testing.TB, number, month, year, cvc, name string) card.Card {
	t.Helper()
	c, err := card.ParseCard(card.CardInput{Number: number, ExpMonth: month, ExpYear: year, CVC: cvc, Name: name})
	require.NoError(t, err)
	return c
}

// visa is the card of Stripe's forwarding guide: 03/2030, CVC 123.
func visa(t testing.TB) card.Card { return testCard(t, visaPAN, "03", "2030", "123", "First Last") }

// allCard are the four card replacements.
var allCard = []string{"card_number", "card_expiry", "card_cvc", "cardholder_name"}

// requireVaultError asserts err is a *vault.Error of kind invalid with code
// and param, and returns it.
func requireVaultError(t *testing.T, err error, code, param string) *vault.Error {
	t.Helper()
	var e *vault.Error
	require.True(t, errors.As(err, &e), "want *vault.Error, got %v", err)
	assert.Equal(t, vault.KindInvalid, e.Kind)
	assert.Equal(t, code, e.Code)
	assert.Equal(t, param, e.Param)
	return e
}

// jsonDest is a small JSON destination with every card field.
func jsonDest() Destination {
	return Destination{
		URL:    "https://api.processor.example/v1/payments",
		Format: FormatJSON,
		Fields: map[Replacement][]Field{
			CardNumber:     {{Path: "card.number"}},
			CardExpiry:     {{Path: "card.exp_month", Expiry: "MM"}, {Path: "card.exp_year", Expiry: "YYYY"}},
			CardCVC:        {{Path: "card.cvc"}},
			CardholderName: {{Path: "card.name"}},
		},
	}
}
