package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/vault"
)

// pgpKeyBits is the RSA modulus length of every import key: Stripe sends
// its PAN export only to keys of at least 4096 bits.
const pgpKeyBits = 4096

// pgpKeyAD returns the associated data binding a wrapped private key to its
// tenant and key id, so a wrapped key copied to another row never opens.
func pgpKeyAD(tenantID, keyID uuid.UUID) []byte {
	return []byte("cardvault/pgp-key/" + tenantID.String() + "/" + keyID.String())
}

// CreatePGPKey makes an RSA-4096 OpenPGP key pair for the actor's tenant,
// stores its private key wrapped by the root KEK and audits it. It returns
// a KindUnavailable error (kek_unavailable) when the KEK fails, and a
// domain error when the database does.
func (s *Service) CreatePGPKey(ctx context.Context, a vault.Actor) (vault.PGPKey, error) {
	k := vault.PGPKey{ID: uuid.New(), TenantID: a.TenantID, Bits: pgpKeyBits, CreatedAt: s.clock()}
	ent, err := newPGPEntity(k)
	if err != nil {
		return vault.PGPKey{}, vault.Internal(err)
	}
	k.Fingerprint = fmt.Sprintf("%X", ent.PrimaryKey.Fingerprint)
	if k.PublicKey, err = armoredPublic(ent); err != nil {
		return vault.PGPKey{}, vault.Internal(err)
	}
	wrapped, err := s.wrapPGPEntity(ent, k)
	if err != nil {
		return vault.PGPKey{}, err
	}
	err = s.inTx(ctx, "pgp key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO pgp_keys (id, tenant_id, fingerprint, bits, public_key, private_key_wrapped, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, k.ID, k.TenantID, k.Fingerprint, k.Bits, k.PublicKey, wrapped, k.CreatedAt); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionPGPKeyCreate, uuid.Nil,
			map[string]any{"pgp_key_id": k.ID, "fingerprint": k.Fingerprint, "bits": k.Bits}))
	})
	return k, err
}

// newPGPEntity returns a fresh RSA-4096 entity named after the tenant.
func newPGPEntity(k vault.PGPKey) (*openpgp.Entity, error) {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: pgpKeyBits, Time: func() time.Time { return k.CreatedAt }}
	ent, err := openpgp.NewEntity("cardvault import key", "tenant "+k.TenantID.String(), "", cfg)
	if err != nil {
		return nil, fmt.Errorf("pgp: new key: %w", err)
	}
	return ent, nil
}

// armoredPublic returns ent's public key, ASCII-armored.
func armoredPublic(ent *openpgp.Entity) (string, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return "", err
	}
	if err := ent.Serialize(w); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	buf.WriteByte('\n')
	return buf.String(), nil
}

// wrapPGPEntity returns ent's private key serialized and encrypted under
// the root KEK; the clear serialization only lives in memory.
func (s *Service) wrapPGPEntity(ent *openpgp.Entity, k vault.PGPKey) ([]byte, error) {
	var buf bytes.Buffer
	if err := ent.SerializePrivate(&buf, nil); err != nil {
		return nil, vault.Internal(err)
	}
	clear := buf.Bytes()
	defer clear2zero(clear)
	wrapped, err := s.keys.kek.Encrypt(clear, pgpKeyAD(k.TenantID, k.ID))
	if err != nil {
		return nil, kekUnavailable(err)
	}
	return wrapped, nil
}

// clear2zero overwrites b.
func clear2zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// ListPGPKeys returns the actor's tenant's import keys, newest first, or a
// domain error when the database fails.
func (s *Service) ListPGPKeys(ctx context.Context, a vault.Actor) ([]vault.PGPKey, error) {
	rows, err := s.db.Query(ctx, `SELECT `+pgpKeyColumns+` FROM pgp_keys WHERE tenant_id = $1
		ORDER BY created_at DESC, id`, a.TenantID)
	if err != nil {
		return nil, dbError(err, "pgp key")
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.PGPKey, error) { return scanPGPKey(r) })
	return keys, dbError(err, "pgp key")
}

const pgpKeyColumns = `id, tenant_id, fingerprint, bits, public_key, created_at, retired_at`

// scanPGPKey reads one row of pgpKeyColumns.
func scanPGPKey(row pgx.Row) (vault.PGPKey, error) {
	var k vault.PGPKey
	err := row.Scan(&k.ID, &k.TenantID, &k.Fingerprint, &k.Bits, &k.PublicKey, &k.CreatedAt, &k.RetiredAt)
	return k, err
}

// RetirePGPKey drops the private half of the tenant's key id for good and
// audits it. It returns KindNotFound for an unknown key or another
// tenant's, and KindConflict (pgp_key_retired) for a retired one.
func (s *Service) RetirePGPKey(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.PGPKey, error) {
	var k vault.PGPKey
	err := s.inTx(ctx, "pgp key", func(tx pgx.Tx) error {
		var err error
		k, err = scanPGPKey(tx.QueryRow(ctx, `SELECT `+pgpKeyColumns+` FROM pgp_keys
			WHERE id = $1 AND tenant_id = $2 FOR UPDATE`, id, a.TenantID))
		if err != nil {
			return err
		}
		if k.RetiredAt != nil {
			return vault.Errorf(vault.KindConflict, vault.CodePGPKeyRetired, "the import key is already retired")
		}
		now := s.clock()
		k.RetiredAt = &now
		if _, err := tx.Exec(ctx, `UPDATE pgp_keys SET retired_at = $2, private_key_wrapped = NULL WHERE id = $1`, id, now); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionPGPKeyRetire, uuid.Nil,
			map[string]any{"pgp_key_id": k.ID, "fingerprint": k.Fingerprint}))
	})
	return k, err
}

// OpenPGPMessage returns the clear literal data of the OpenPGP message r,
// decrypted as it is read with the tenant's live import keys, and audits
// which key opened it. The reader's Read fails with KindInvalid
// (pgp_integrity) when the message is truncated or altered. It returns
// KindConflict (no_pgp_key) without a live key, KindInvalid (pgp_wrong_key)
// when none opens it, KindInvalid (pgp_invalid_file) when r is not an
// OpenPGP message, and kek_unavailable when the KEK fails.
func (s *Service) OpenPGPMessage(ctx context.Context, a vault.Actor, r io.Reader) (io.Reader, error) {
	ring, ids, err := s.pgpKeyRing(ctx, a.TenantID)
	if err != nil {
		return nil, err
	}
	md, err := openpgp.ReadMessage(r, ring, nil, nil)
	if err != nil {
		return nil, pgpReadError(err)
	}
	if md.DecryptedWith.PublicKey == nil {
		return nil, vault.Errorf(vault.KindInvalid, vault.CodePGPInvalidFile, "the file is not encrypted: refusing a clear card file")
	}
	fp := fmt.Sprintf("%X", md.DecryptedWith.Entity.PrimaryKey.Fingerprint)
	err = s.insertAudit(ctx, s.db, s.event(a, vault.ActionPGPKeyUse, uuid.Nil,
		map[string]any{"pgp_key_id": ids[fp], "fingerprint": fp}))
	if err != nil {
		return nil, dbError(err, "pgp key")
	}
	return pgpBody{md.UnverifiedBody}, nil
}

// pgpKeyRing returns the tenant's live import keys, unwrapped, and their
// ids by fingerprint.
func (s *Service) pgpKeyRing(ctx context.Context, tenantID uuid.UUID) (openpgp.EntityList, map[string]uuid.UUID, error) {
	rows, err := s.db.Query(ctx, `SELECT id, fingerprint, private_key_wrapped FROM pgp_keys
		WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY created_at DESC`, tenantID)
	if err != nil {
		return nil, nil, dbError(err, "pgp key")
	}
	defer rows.Close()
	var ring openpgp.EntityList
	ids := map[string]uuid.UUID{}
	for rows.Next() {
		var id uuid.UUID
		var fp string
		var wrapped []byte
		if err := rows.Scan(&id, &fp, &wrapped); err != nil {
			return nil, nil, dbError(err, "pgp key")
		}
		ent, err := s.unwrapPGPEntity(tenantID, id, wrapped)
		if err != nil {
			return nil, nil, err
		}
		ring, ids[fp] = append(ring, ent), id
	}
	if err := rows.Err(); err != nil {
		return nil, nil, dbError(err, "pgp key")
	}
	if len(ring) == 0 {
		return nil, nil, vault.Errorf(vault.KindConflict, vault.CodeNoPGPKey,
			"the tenant has no live import key: create one with `cardvault pgp key create`")
	}
	return ring, ids, nil
}

// unwrapPGPEntity returns the private entity wrapped for tenantID and id.
func (s *Service) unwrapPGPEntity(tenantID, id uuid.UUID, wrapped []byte) (*openpgp.Entity, error) {
	clear, err := s.keys.kek.Decrypt(wrapped, pgpKeyAD(tenantID, id))
	if err != nil {
		return nil, kekUnavailable(err)
	}
	defer clear2zero(clear)
	ent, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(clear)))
	if err != nil {
		return nil, vault.Internal(fmt.Errorf("pgp: read unwrapped key: %w", err))
	}
	return ent, nil
}

// pgpReadError maps an error opening a message to a client-safe domain
// error; the library's text is kept as the cause only.
func pgpReadError(err error) error {
	var se pgperrors.StructuralError
	var ue pgperrors.UnsupportedError
	switch {
	case errors.Is(err, pgperrors.ErrKeyIncorrect):
		return &vault.Error{Kind: vault.KindInvalid, Code: vault.CodePGPWrongKey, Err: err,
			Message: "the file is not encrypted to any live import key of this tenant"}
	case errors.As(err, &se), errors.As(err, &ue), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "openpgp"):
		return &vault.Error{Kind: vault.KindInvalid, Code: vault.CodePGPInvalidFile, Err: err,
			Message: "the file is not a readable OpenPGP message (corrupt, truncated or not encrypted)"}
	}
	return vault.Internal(err)
}

// pgpBody is a message's clear body whose read errors (a failed integrity
// check at the end, a truncated stream) become domain errors.
type pgpBody struct{ r io.Reader }

// Read reads clear bytes; at a damaged or truncated end it returns a
// KindInvalid error (pgp_integrity).
func (b pgpBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = &vault.Error{Kind: vault.KindInvalid, Code: vault.CodePGPIntegrity, Err: err,
			Message: "the file is truncated or was altered: its integrity check failed"}
	}
	return n, err
}

var _ vault.PGPKeys = (*Service)(nil)

// rewrapPGPKeys moves the tenant's live import keys from the configured
// KEK to newKEK within tx, as the root KEK rotation does with the keysets,
// and returns how many it moved and how many newKEK already opened.
func (s *Service) rewrapPGPKeys(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, newKEK tink.AEAD, dryRun bool) (int, int, error) {
	rows, err := tx.Query(ctx, `SELECT id, private_key_wrapped FROM pgp_keys
		WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY id FOR UPDATE`, tenantID)
	if err != nil {
		return 0, 0, err
	}
	wrapped := map[uuid.UUID][]byte{}
	for rows.Next() {
		var id uuid.UUID
		var w []byte
		if err := rows.Scan(&id, &w); err != nil {
			return 0, 0, err
		}
		wrapped[id] = w
	}
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	var n, already int
	for id, w := range wrapped {
		moved, err := s.rewrapPGPKey(ctx, tx, tenantID, id, w, newKEK, dryRun)
		if err != nil {
			return n, already, err
		}
		if moved {
			n++
		} else {
			already++
		}
	}
	return n, already, nil
}

// rewrapPGPKey moves one wrapped private key to newKEK and reports whether
// it did; one only newKEK opens is already done.
func (s *Service) rewrapPGPKey(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, w []byte, newKEK tink.AEAD, dryRun bool) (bool, error) {
	ad := pgpKeyAD(tenantID, id)
	clear, err := s.keys.kek.Decrypt(w, ad)
	if err != nil {
		if _, err2 := newKEK.Decrypt(w, ad); err2 == nil {
			return false, nil
		}
		return false, keyError(tenantID, err)
	}
	defer clear2zero(clear)
	if dryRun {
		return true, nil
	}
	nw, err := newKEK.Encrypt(clear, ad)
	if err != nil {
		return false, keyError(tenantID, err)
	}
	_, err = tx.Exec(ctx, `UPDATE pgp_keys SET private_key_wrapped = $2 WHERE id = $1`, id, nw)
	return true, err
}
