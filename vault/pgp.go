package vault

import (
	"context"
	"io"
	"time"

	"github.com/google/uuid"
)

// PGPKey is one of a tenant's OpenPGP import keys: senders encrypt card
// files to its public half; the private half stays wrapped by the root KEK
// inside the vault and is dropped when the key is retired.
type PGPKey struct {
	ID          uuid.UUID
	TenantID    uuid.UUID
	Fingerprint string // the OpenPGP v4 fingerprint, upper-case hex
	Bits        int    // RSA modulus length
	PublicKey   string // the ASCII-armored public key, to publish
	CreatedAt   time.Time
	RetiredAt   *time.Time // nil while the key can decrypt
}

// Audit actions of the OpenPGP import keys and the file import.
const (
	ActionPGPKeyCreate Action = "pgp_key.create"
	ActionPGPKeyRetire Action = "pgp_key.retire"
	// ActionPGPKeyUse records that a tenant's import keys opened a file.
	ActionPGPKeyUse Action = "pgp_key.use"
)

// PGPKeys is the role of the tenant's OpenPGP import keys.
type PGPKeys interface {
	// CreatePGPKey makes an RSA-4096 key pair for the actor's tenant and
	// returns it; the private key is stored wrapped by the root KEK. It
	// returns a KindUnavailable error when the KEK or database fails.
	CreatePGPKey(ctx context.Context, a Actor) (PGPKey, error)
	// ListPGPKeys returns the tenant's import keys, newest first, or a
	// domain error when the database fails.
	ListPGPKeys(ctx context.Context, a Actor) ([]PGPKey, error)
	// RetirePGPKey drops the private half of the key id for good and
	// returns it retired: KindNotFound for another tenant's or an unknown
	// key, KindConflict (pgp_key_retired) when it is already retired.
	RetirePGPKey(ctx context.Context, a Actor, id uuid.UUID) (PGPKey, error)
	// OpenPGPMessage returns the clear literal data of the OpenPGP message
	// r, decrypted as it is read with the tenant's live import keys. The
	// returned reader's Read fails with KindInvalid (pgp_integrity) when
	// the message turns out truncated or altered at its end. It returns
	// KindConflict (no_pgp_key) without a live key, KindInvalid
	// (pgp_wrong_key) when no live key opens it, and KindInvalid
	// (pgp_invalid_file) for a message it cannot parse.
	OpenPGPMessage(ctx context.Context, a Actor, r io.Reader) (io.Reader, error)
}

// ActionTokenExport records that a token's card left the vault in an
// export file; one row per token, committed before its bytes are written.
const ActionTokenExport Action = "token.export"

// ExportFilter selects the tokens an export takes; the zero filter takes
// every token of the tenant.
type ExportFilter struct {
	BusinessKeyPrefix string
	CreatedAfter      *time.Time // nil: any creation time
}

// TokenExporter is the role of the operator's export of a tenant's cards.
type TokenExporter interface {
	// ExportTokens calls each with every selected token of the actor's
	// tenant and its card (never its CVC), in token id order, a page at a
	// time: the page's token.export audit rows (carrying exportID) commit
	// before each is called for any of its tokens. It returns how many
	// tokens it passed to each, and each's error, the KEK's or the
	// database's.
	ExportTokens(ctx context.Context, a Actor, f ExportFilter, exportID uuid.UUID, each func(Revealed) error) (int, error)
}
