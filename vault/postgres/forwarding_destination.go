package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// This file is a tenant's forwarding allow-list: destinations with their
// configuration (plain jsonb, no secret) and their secrets (the signature
// key and the mTLS certificate and key), sealed with the tenant data key.

// maxDestinations bounds a tenant's live destinations.
const maxDestinations = 100

// The field names bound into a destination's ciphertexts.
const (
	fieldSignatureKey = "forwarding_signature_key"
	fieldClientCert   = "forwarding_client_certificate"
)

// destinationColumns are read by every destination query, in scanDestination order.
const destinationColumns = `id, tenant_id, url, preset, config, signature_ct, client_cert_ct, key_id, created_at,
	client_cert_not_after`

// destinationRow is a destination as stored.
type destinationRow struct {
	vault.ForwardDestination
	signatureCT, clientCertCT []byte
	keyID                     *int64
}

// scanDestination reads a row of destinationColumns.
func scanDestination(row pgx.Row) (destinationRow, error) {
	var d destinationRow
	err := row.Scan(&d.ID, &d.TenantID, &d.URL, &d.Preset, &d.Config, &d.signatureCT, &d.clientCertCT, &d.keyID, &d.CreatedAt,
		&d.ClientCertExpires)
	d.CreatedAt = d.CreatedAt.UTC()
	if d.ClientCertExpires != nil {
		at := d.ClientCertExpires.UTC()
		d.ClientCertExpires = &at
	}
	d.HasSignatureKey, d.HasClientCert = d.signatureCT != nil, d.clientCertCT != nil
	return d, err
}

// CreateDestination adds a destination to the actor's tenant's allow-list,
// its secrets sealed with the tenant data key, and audits it. It returns a
// KindInvalid error (invalid_destination, naming the setting) for a bad
// configuration, an unknown preset or a client certificate that does not
// parse with its key, and KindConflict when the tenant has
// maxDestinations already.
func (s *Service) CreateDestination(ctx context.Context, a vault.Actor, in vault.DestinationInput) (vault.ForwardDestination, error) {
	dest, err := s.destinationOf(in)
	if err != nil {
		return vault.ForwardDestination{}, err
	}
	cert, notAfter, err := clientCertificate(in)
	if err != nil {
		return vault.ForwardDestination{}, err
	}
	config, err := json.Marshal(dest)
	if err != nil {
		return vault.ForwardDestination{}, vault.Internal(err)
	}
	d := destinationRow{ForwardDestination: vault.ForwardDestination{ID: "fwddst_" + rand.Text(), TenantID: a.TenantID,
		URL: dest.URL, Preset: in.Preset, Config: config, CreatedAt: s.clock(), ClientCertExpires: notAfter}}
	for attempt := 1; ; attempt++ {
		err = s.insertDestination(ctx, a, d, in.SignatureSecret, cert)
		if !isSealingKeyViolation(err) || attempt == maxSealAttempts {
			break
		}
		s.keys.forget(a.TenantID) // sealed under a key retired meanwhile: seal again with the current keys
	}
	if err != nil {
		return vault.ForwardDestination{}, err
	}
	return s.destinationOut(d, in.SignatureSecret, cert), nil
}

// destinationOut is the record of a destination just stored.
func (s *Service) destinationOut(d destinationRow, signature card.Secret, cert []byte) vault.ForwardDestination {
	out := d.ForwardDestination
	out.HasSignatureKey, out.HasClientCert = !signature.IsZero(), cert != nil
	return out
}

// insertDestination seals d's secrets with the tenant's primary data key and
// stores d with its audit row, refusing past maxDestinations live ones.
func (s *Service) insertDestination(ctx context.Context, a vault.Actor, d destinationRow, signature card.Secret, cert []byte) error {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return err
	}
	if err := s.sealDestination(tk, &d, signature, cert); err != nil {
		return err
	}
	return s.inTx(ctx, "forwarding destination", func(tx pgx.Tx) error {
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM forwarding_destinations
			WHERE tenant_id = $1 AND deleted_at IS NULL`, a.TenantID).Scan(&live); err != nil {
			return err
		}
		if live >= maxDestinations {
			return vault.Errorf(vault.KindConflict, vault.CodeTooManyDestinations,
				"a tenant may have at most %d forwarding destinations: remove one first", maxDestinations)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO forwarding_destinations (`+destinationColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, d.ID, d.TenantID, d.URL, d.Preset, d.Config,
			d.signatureCT, d.clientCertCT, d.keyID, d.CreatedAt, d.ClientCertExpires); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionDestinationCreate, uuid.Nil,
			map[string]any{"destination_id": d.ID, "url": d.URL, "preset": d.Preset}))
	})
}

// sealDestination seals the signature key and the client certificate of d
// under tk's primary key, bound to the tenant, the destination and the field.
func (s *Service) sealDestination(tk *tenantKeys, d *destinationRow, signature card.Secret, cert []byte) error {
	d.signatureCT, d.clientCertCT, d.keyID = nil, nil, nil
	secrets := []struct {
		out   *[]byte
		field string
		value []byte
	}{{&d.signatureCT, fieldSignatureKey, []byte(signature.Reveal())}, {&d.clientCertCT, fieldClientCert, cert}}
	for _, sec := range secrets {
		if len(sec.value) == 0 {
			continue
		}
		ct, err := s.sealSide(tk, d.TenantID, d.ID, sec.field, sec.value)
		if err != nil {
			return err
		}
		*sec.out = ct
		keyID := int64(tk.sealer.PrimaryKeyID())
		d.keyID = &keyID
	}
	return nil
}

// sealSide seals value under tk's primary data key bound to the tenant, the
// row id and field: the side rows' form of sealField, for rows whose id is
// not a token's uuid.
func (s *Service) sealSide(tk *tenantKeys, tenantID uuid.UUID, rowID, field string, value []byte) ([]byte, error) {
	ct, err := tk.sealer.Seal(value, crypto.FieldAD(tenantID.String(), rowID, field))
	if err != nil {
		return nil, vault.Internal(err)
	}
	s.usage.add(tenantID, tk.sealer.PrimaryKeyID())
	return ct, nil
}

// openSide opens what sealSide sealed, reloading the tenant's keys when tk
// lacks the key (a rotation since tk was loaded).
func (s *Service) openSide(tk *tenantKeys, tenantID uuid.UUID, rowID, field string, ct []byte) ([]byte, error) {
	if ct == nil {
		return nil, nil
	}
	ad := crypto.FieldAD(tenantID.String(), rowID, field)
	pt, err := tk.sealer.Open(crypto.Ciphertext(ct), ad)
	if err != nil && !tk.holds(ct) {
		if cur, loadErr := s.newerKeys(tenantID, tk); loadErr == nil && cur != tk {
			pt, err = cur.sealer.Open(crypto.Ciphertext(ct), ad)
		}
	}
	if err != nil {
		return nil, vault.Internal(errors.New(field + " does not open"))
	}
	return pt, nil
}

// GetDestination returns the actor's tenant's destination id and audits the
// read. It returns KindNotFound for an unknown, removed or foreign id.
func (s *Service) GetDestination(ctx context.Context, a vault.Actor, id string) (vault.ForwardDestination, error) {
	var d destinationRow
	err := s.inTx(ctx, "forwarding destination", func(tx pgx.Tx) error {
		var err error
		d, err = scanDestination(tx.QueryRow(ctx, `SELECT `+destinationColumns+` FROM forwarding_destinations
			WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL`, a.TenantID, id))
		if err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionDestinationRead, uuid.Nil, map[string]any{"destination_id": id}))
	})
	return d.ForwardDestination, err
}

// ListDestinations returns the actor's tenant's destinations, oldest first,
// and audits the listing. It returns a domain error when the database fails.
func (s *Service) ListDestinations(ctx context.Context, a vault.Actor) ([]vault.ForwardDestination, error) {
	var out []vault.ForwardDestination
	err := s.inTx(ctx, "forwarding destination", func(tx pgx.Tx) error {
		rows, err := liveDestinations(ctx, tx, a.TenantID)
		if err != nil {
			return err
		}
		out = make([]vault.ForwardDestination, 0, len(rows))
		for _, d := range rows {
			out = append(out, d.ForwardDestination)
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionDestinationList, uuid.Nil, map[string]any{"count": len(out)}))
	})
	return out, err
}

// liveDestinations returns the tenant's destinations that are not removed,
// oldest first.
func liveDestinations(ctx context.Context, q querier, tenantID uuid.UUID) ([]destinationRow, error) {
	rows, err := q.Query(ctx, `SELECT `+destinationColumns+` FROM forwarding_destinations
		WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (destinationRow, error) { return scanDestination(r) })
}

// DeleteDestination removes the actor's tenant's destination id: no forward
// may use it any more, its secrets are destroyed, and the records of
// forwards made through it stay. It is audited. It returns KindNotFound for
// an unknown, removed or foreign id.
func (s *Service) DeleteDestination(ctx context.Context, a vault.Actor, id string) error {
	return s.inTx(ctx, "forwarding destination", func(tx pgx.Tx) error {
		var u string
		if err := tx.QueryRow(ctx, `UPDATE forwarding_destinations
			SET deleted_at = $3, signature_ct = NULL, client_cert_ct = NULL, client_cert_not_after = NULL, key_id = NULL
			WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING url`,
			a.TenantID, id, s.clock()).Scan(&u); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionDestinationDelete, uuid.Nil,
			map[string]any{"destination_id": id, "url": u}))
	})
}

// destinationConfig is DestinationInput.Config.
type destinationConfig struct {
	Format          forwarding.Format                    `json:"format"`
	Fields          map[forwarding.Replacement]fieldList `json:"fields"`
	SecretHeaders   []string                             `json:"secret_headers"`
	TimeoutMs       int                                  `json:"timeout_ms"`
	Signature       *forwarding.Signature                `json:"signature"`
	RemoteTokenPath string                               `json:"remote_token_path"`
}

// fieldList is where one replacement goes: a path, a {"path","expiry"}
// object, or a list of either.
type fieldList []forwarding.Field

// UnmarshalJSON accepts the three spellings of a fieldList.
func (f *fieldList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
		for _, it := range items {
			one, err := oneField(it)
			if err != nil {
				return err
			}
			*f = append(*f, one)
		}
		return nil
	}
	one, err := oneField(b)
	*f = fieldList{one}
	return err
}

// oneField decodes a path string or a {"path","expiry"} object.
func oneField(b []byte) (forwarding.Field, error) {
	var path string
	if json.Unmarshal(b, &path) == nil {
		return forwarding.Field{Path: path}, nil
	}
	var fld forwarding.Field
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return fld, dec.Decode(&fld)
}

// destinationOf returns the destination in describes, validated: a preset
// with the URL and the few settings a preset takes from the merchant, or a
// custom one. It returns a KindInvalid error (invalid_destination) naming
// the setting at fault.
func (s *Service) destinationOf(in vault.DestinationInput) (forwarding.Destination, error) {
	var cfg destinationConfig
	if len(bytes.TrimSpace(in.Config)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(in.Config))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return forwarding.Destination{}, invalidDestination("fields", "the destination's settings do not decode: check format, fields and signature")
		}
	}
	d, err := baseDestination(in, cfg)
	if err != nil {
		return d, err
	}
	if err := checkText(d.URL, vault.MaxForwardURLLen, "url"); err != nil {
		return d, err
	}
	if err := withSignatureKey(&d, in.SignatureSecret); err != nil {
		return d, err
	}
	return d, d.Validate(s.allowLoopback)
}

// baseDestination is in's preset with its URL and overrides, or in's
// custom destination.
func baseDestination(in vault.DestinationInput, cfg destinationConfig) (forwarding.Destination, error) {
	if in.Preset == "" {
		fields := make(map[forwarding.Replacement][]forwarding.Field, len(cfg.Fields))
		for r, f := range cfg.Fields {
			fields[r] = f
		}
		return forwarding.Destination{URL: in.URL, Format: cfg.Format, Fields: fields, SecretHeaders: cfg.SecretHeaders,
			TimeoutMs: cfg.TimeoutMs, Signature: cfg.Signature, RemoteTokenPath: cfg.RemoteTokenPath}, nil
	}
	p, ok := forwarding.PresetByName(in.Preset)
	if !ok {
		return forwarding.Destination{}, invalidDestination("preset", "no such preset: GET /forwarding/presets lists them")
	}
	if cfg.Format != "" || cfg.Fields != nil || cfg.RemoteTokenPath != "" {
		return forwarding.Destination{}, invalidDestination("preset", "a preset's format and fields are fixed: leave them out, or describe a custom destination without preset")
	}
	d := p.DestinationFor(in.URL)
	for _, h := range cfg.SecretHeaders {
		if !slices.ContainsFunc(d.SecretHeaders, func(x string) bool { return strings.EqualFold(x, h) }) {
			d.SecretHeaders = append(d.SecretHeaders, h)
		}
	}
	if cfg.TimeoutMs != 0 {
		d.TimeoutMs = cfg.TimeoutMs
	}
	if cfg.Signature != nil {
		d.Signature = cfg.Signature
	}
	return d, nil
}

// withSignatureKey puts the sealed-to-be signature key into d's rule.
func withSignatureKey(d *forwarding.Destination, key card.Secret) error {
	switch {
	case d.Signature != nil:
		d.Signature.Secret = key
	case !key.IsZero():
		return invalidDestination("signature", "a signature secret needs a signature rule (encoding and header or field)")
	}
	return nil
}

// invalidDestination is the error of a destination setting at fault.
func invalidDestination(param, message string) error {
	return vault.InvalidParam(vault.CodeInvalidDestination, param, message)
}

// clientCertificate checks in's mTLS certificate and key and returns them
// as the PEM to seal, with the certificate's expiry; nil when there are
// none. It returns a KindInvalid error when only one is given or they do
// not make a key pair.
func clientCertificate(in vault.DestinationInput) ([]byte, *time.Time, error) {
	certPEM, keyPEM := strings.TrimSpace(in.ClientCertificatePEM), strings.TrimSpace(in.ClientKeyPEM.Reveal())
	switch {
	case certPEM == "" && keyPEM == "":
		return nil, nil, nil
	case certPEM == "" || keyPEM == "":
		return nil, nil, invalidDestination("client_certificate", "an mTLS client certificate needs both the certificate and its private key")
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, nil, invalidDestination("client_certificate", "the client certificate and private key must be PEM and belong together")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, invalidDestination("client_certificate", "the client certificate does not parse")
	}
	notAfter := leaf.NotAfter.UTC()
	return []byte(certPEM + "\n" + keyPEM + "\n"), &notAfter, nil
}

// openDestination returns the stored destination d as the forwarding
// package takes it, its signature key and client certificate opened.
func (s *Service) openDestination(tk *tenantKeys, d destinationRow) (forwarding.Destination, *tls.Certificate, error) {
	var dest forwarding.Destination
	if err := json.Unmarshal(d.Config, &dest); err != nil {
		return dest, nil, vault.Internal(errors.New("stored destination does not decode"))
	}
	dest.URL = d.URL
	key, err := s.openSide(tk, d.TenantID, d.ID, fieldSignatureKey, d.signatureCT)
	if err != nil {
		return dest, nil, err
	}
	if dest.Signature != nil {
		dest.Signature.Secret = card.NewSecret(string(key))
	}
	pemBytes, err := s.openSide(tk, d.TenantID, d.ID, fieldClientCert, d.clientCertCT)
	if err != nil || pemBytes == nil {
		return dest, nil, err
	}
	pair, err := tls.X509KeyPair(pemBytes, pemBytes)
	if err != nil {
		return dest, nil, vault.Internal(errors.New("stored client certificate does not parse"))
	}
	return dest, &pair, nil
}
