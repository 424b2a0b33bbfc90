package postgres

import (
	"context"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// The field names bound into each ciphertext's associated data.
const (
	fieldPAN  = "pan"
	fieldName = "name"
	fieldCVC  = "cvc"
)

// sealedCard is a card's ciphertexts for one token row, with the id of the
// key that sealed them.
type sealedCard struct {
	keyID        uint32
	pan          crypto.Ciphertext
	name         crypto.Ciphertext // nil when the card has no name
	cvc          crypto.Ciphertext // nil when the card has no CVC
	cvcExpiresAt *time.Time
}

// seal encrypts the card's PAN, name and CVC separately under the tenant's
// primary data key, each bound to tenant, token and field.
func (s *Service) seal(tk *tenantKeys, tenantID, tokenID uuid.UUID, c card.Card) (sealedCard, error) {
	out := sealedCard{keyID: tk.sealer.PrimaryKeyID()}
	var err error
	if out.pan, err = s.sealField(tk, tenantID, tokenID, fieldPAN, []byte(c.PAN.Reveal())); err != nil {
		return sealedCard{}, err
	}
	if c.Name != "" {
		if out.name, err = s.sealField(tk, tenantID, tokenID, fieldName, []byte(c.Name)); err != nil {
			return sealedCard{}, err
		}
	}
	if !c.CVC.IsZero() {
		if out.cvc, err = s.sealField(tk, tenantID, tokenID, fieldCVC, []byte(c.CVC.Reveal())); err != nil {
			return sealedCard{}, err
		}
		exp := s.clock().Add(s.cvcTTL)
		out.cvcExpiresAt = &exp
	}
	return out, nil
}

// resealCard returns c opened with the keys that sealed it (stale) and
// sealed again under cur's primary key, bound to the same tenant, token and
// fields; the CVC keeps its expiry.
func (s *Service) resealCard(stale, cur *tenantKeys, tenantID, tokenID uuid.UUID, c sealedCard) (sealedCard, error) {
	out := sealedCard{keyID: cur.sealer.PrimaryKeyID(), cvcExpiresAt: c.cvcExpiresAt}
	fields := []*crypto.Ciphertext{&c.pan, &c.name, &c.cvc}
	resealed := []*crypto.Ciphertext{&out.pan, &out.name, &out.cvc}
	for i, field := range []string{fieldPAN, fieldName, fieldCVC} {
		if *fields[i] == nil {
			continue
		}
		pt, err := s.openField(stale, tenantID, tokenID, field, *fields[i])
		if err != nil {
			return sealedCard{}, err
		}
		if *resealed[i], err = s.sealField(cur, tenantID, tokenID, field, pt); err != nil {
			return sealedCard{}, err
		}
	}
	return out, nil
}

func (s *Service) sealField(tk *tenantKeys, tenantID, tokenID uuid.UUID, field string, value []byte) (crypto.Ciphertext, error) {
	ct, err := tk.sealer.Seal(value, crypto.FieldAD(tenantID.String(), tokenID.String(), field))
	if err != nil {
		return nil, vault.Internal(err)
	}
	s.usage.add(tenantID, tk.sealer.PrimaryKeyID())
	return ct, nil
}

// openField decrypts one sealed field of a token row. A ciphertext that does
// not open (tampered, moved to another row, or its key destroyed) is an
// internal error; the vault never returns partial card data.
//
// When tk does not hold the key that sealed ct (tk was loaded before a
// rotation added it, and the row was sealed or re-encrypted under it since),
// it opens ct with the tenant's keys reloaded, if they changed since tk.
func (s *Service) openField(tk *tenantKeys, tenantID, tokenID uuid.UUID, field string, ct crypto.Ciphertext) ([]byte, error) {
	if ct == nil {
		return nil, nil
	}
	ad := crypto.FieldAD(tenantID.String(), tokenID.String(), field)
	pt, err := tk.sealer.Open(ct, ad)
	if err != nil && !tk.holds(ct) {
		if cur, loadErr := s.newerKeys(tenantID, tk); loadErr == nil && cur != tk {
			pt, err = cur.sealer.Open(ct, ad)
		}
	}
	if err != nil {
		return nil, vault.Internal(err)
	}
	return pt, nil
}

// holds reports whether the data keyset of tk has the key named by ct's
// prefix (enabled or not).
func (tk *tenantKeys) holds(ct crypto.Ciphertext) bool {
	id, err := ct.KeyID()
	if err != nil {
		return true // not a TINK ciphertext: no other keys would open it
	}
	_, ok := keyState(tk.data, id)
	return ok
}

// newerKeys returns the tenant's keys reloaded when their keysets changed
// since stale was loaded, else stale; the load is bounded by keyLoadTimeout
// and does not depend on any one request's context.
func (s *Service) newerKeys(tenantID uuid.UUID, stale *tenantKeys) (*tenantKeys, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyLoadTimeout)
	defer cancel()
	return s.keys.renew(ctx, tenantID, stale)
}

// openString opens a sealed text field.
func (s *Service) openString(tk *tenantKeys, tenantID, tokenID uuid.UUID, field string, ct crypto.Ciphertext) (string, error) {
	pt, err := s.openField(tk, tenantID, tokenID, field, ct)
	return string(pt), err
}

// cardDigestDomain separates card digests from fingerprints, which the
// same PRF keys compute over a PAN's digits alone.
const cardDigestDomain = "cardvault card digest v1\x00"

// cardDigest returns the keyed digest of c: the PRF of tk's primary
// fingerprint key over c's PAN, expiry, name and CVC, each length-prefixed.
// Equal digests under one key mean the same card; a digest made under
// another key never matches. It returns an internal error when the PRF
// fails.
func (tk *tenantKeys) cardDigest(c card.Card) ([]byte, error) {
	pan, cvc := c.PAN.Reveal(), c.CVC.Reveal()
	b := make([]byte, 0, len(cardDigestDomain)+64+len(c.Name))
	b = append(b, cardDigestDomain...)
	for _, f := range []string{pan, strconv.Itoa(c.Expiry.Month), strconv.Itoa(c.Expiry.Year), c.Name, cvc} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	sum, err := tk.fp.Sum(b)
	clear(b)
	if err != nil {
		return nil, vault.Internal(err)
	}
	return sum, nil
}

// fingerprint returns the keyed fingerprint of a PAN and its key id.
func (tk *tenantKeys) fingerprint(p card.PAN) ([]byte, uint32, error) {
	sum, err := tk.fp.Sum([]byte(p.Reveal()))
	if err != nil {
		return nil, 0, vault.Internal(err)
	}
	return sum, tk.fp.KeyID(), nil
}
