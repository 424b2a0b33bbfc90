package main

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// minRecipientRSABits is the weakest RSA key a card file is encrypted to.
const minRecipientRSABits = 3072

// fileExport is one `export file` run's settings.
type fileExport struct {
	tenant    uuid.UUID
	format    cardfile.Format
	recipient string // the armored public key file
	out       string
	filter    vault.ExportFilter
	operator  string // the person running the export
}

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Let a tenant's cards leave the vault, encrypted to their new holder"}
	cmd.AddCommand(newExportFileCmd(), newExportRunCmd())
	return cmd
}

func newExportFileCmd() *cobra.Command {
	var raw rawConfig
	var tenant, format, createdAfter string
	var fe fileExport
	var confirm bool
	cmd := &cobra.Command{
		Use:   "file --tenant ID --recipient-key THEIR.asc --format stripe-json|stripe-csv|jsonl --out FILE.pgp --confirm",
		Short: "Write every card of a tenant (never a CVC) into an OpenPGP file only the recipient key opens; one token.export audit row per card",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !confirm {
				return vault.InvalidParam(vault.CodeParameterMissing, "confirm", "exporting card numbers needs --confirm")
			}
			var err error
			if fe.tenant, err = parseTenantID(tenant); err != nil {
				return err
			}
			if fe.format, err = cardfile.ParseFormat(format); err != nil {
				return err
			}
			if fe.filter.CreatedAfter, err = parseCreatedAfter(createdAfter); err != nil {
				return err
			}
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				if err := requireTenant(ctx, a.svc, fe.tenant); err != nil {
					return err
				}
				fe.operator = a.cfg.Operator
				return runFileExport(ctx, a.svc, fe, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&format, "format", "", "the layout inside: stripe-json, stripe-csv or jsonl")
	cmd.Flags().StringVar(&fe.recipient, "recipient-key", "", "the recipient's armored OpenPGP public key (RSA of at least 3072 bits, or an elliptic-curve key)")
	cmd.Flags().StringVar(&fe.out, "out", "", "the encrypted file to write (must not exist)")
	cmd.Flags().StringVar(&fe.filter.BusinessKeyPrefix, "business-key-prefix", "", "export only tokens whose business key starts with this")
	cmd.Flags().StringVar(&createdAfter, "created-after", "", "export only tokens created after this RFC 3339 time")
	cmd.Flags().BoolVar(&confirm, "confirm", false, "confirm that card numbers leave the vault")
	for _, f := range []string{"tenant", "format", "recipient-key", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// parseCreatedAfter returns the time s names, nil for "", or a KindInvalid
// error for another text.
func parseCreatedAfter(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, vault.InvalidParam(vault.CodeParameterInvalid, "created-after", "created-after must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return &t, nil
}

// runFileExport encrypts every selected card of fe's tenant to the
// recipient key into fe.out as it goes; clear bytes never reach the disk.
// It prints the export id on out and the count on errOut. It returns an
// error for an unacceptable key, an existing out file, or a failure of the
// vault or the disk; the file is removed then.
func runFileExport(ctx context.Context, svc *postgres.Service, fe fileExport, out, errOut io.Writer) (err error) {
	to, err := recipientKey(fe.recipient, time.Now())
	if err != nil {
		return err
	}
	f, err := os.OpenFile(fe.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create the export file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(fe.out)
		}
	}()
	id := uuid.New()
	n, err := encryptCards(ctx, svc, fe, id, to, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(errOut, "%d cards exported to %s (export %s)\n", n, fe.out, id)
	fmt.Fprintln(out, id)
	return nil
}

// encryptCards streams the cards through the format writer into the
// OpenPGP encryption onto w.
func encryptCards(ctx context.Context, svc *postgres.Service, fe fileExport, id uuid.UUID, to *openpgp.Entity, w io.Writer) (int, error) {
	cfg := &packet.Config{DefaultCipher: packet.CipherAES256, DefaultHash: crypto.SHA256}
	clear, err := openpgp.Encrypt(w, []*openpgp.Entity{to}, nil, &openpgp.FileHints{IsBinary: true}, cfg)
	if err != nil {
		return 0, vault.Internal(err)
	}
	rows, err := cardfile.NewWriter(clear, fe.format)
	if err != nil {
		return 0, err
	}
	n, err := svc.ExportTokens(ctx, vault.OperatorNamed(fe.tenant, fe.operator), fe.filter, id, rows.Write)
	if err != nil {
		return n, err
	}
	if err := rows.Close(); err != nil {
		return n, err
	}
	return n, clear.Close()
}

// recipientKey reads the armored public key at path and returns it when it
// can encrypt now with enough strength: a KindInvalid error for a key that
// does not parse, cannot encrypt (or has expired), or is RSA under 3072
// bits, DSA or ElGamal.
func recipientKey(path string, now time.Time) (*openpgp.Entity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the recipient key: %w", err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil || len(ring) != 1 {
		return nil, weakKey("the recipient key file must hold exactly one armored OpenPGP public key")
	}
	enc, ok := ring[0].EncryptionKey(now)
	if !ok {
		return nil, weakKey("the recipient key has no valid encryption key (expired, revoked or signing only)")
	}
	return ring[0], checkStrength(enc.PublicKey)
}

// checkStrength refuses RSA under minRecipientRSABits and the legacy
// DSA/ElGamal algorithms.
func checkStrength(pk *packet.PublicKey) error {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly:
		bits, err := pk.BitLength()
		if err != nil || int(bits) < minRecipientRSABits {
			return weakKey(fmt.Sprintf("the recipient's RSA key has %d bits; at least %d are required", bits, minRecipientRSABits))
		}
		return nil
	case packet.PubKeyAlgoECDH, packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448:
		return nil
	}
	return weakKey("the recipient key's algorithm is not accepted: use RSA of at least 3072 bits or an elliptic-curve key")
}

// weakKey returns the KindInvalid error of an unacceptable recipient key.
func weakKey(msg string) error {
	return vault.InvalidParam(vault.CodePGPWeakKey, "recipient-key", msg)
}
