package vault

import (
	"encoding/base64"
	"io"
	"strconv"

	"github.com/google/uuid"
)

// ProviderFile is the import provider of an encrypted card file uploaded to
// the vault (Stripe's PAN export, a jsonl file).
const ProviderFile = "file"

// DefaultMaxImportFileBytes is the largest encrypted card file an import
// takes unless configured otherwise (VAULT_IMPORT_FILE_MAX_BYTES): 1 GiB.
const DefaultMaxImportFileBytes = 1 << 30

// CreateFileImportInput is an encrypted card file to import: its clear
// layout (stripe-json, stripe-csv or jsonl), the OpenPGP message, and the
// most bytes it may have.
type CreateFileImportInput struct {
	Format   string
	File     io.Reader
	MaxBytes int64
}

// FileImportWork is a file import job a worker has leased: where it stands
// and the row after which it resumes.
type FileImportWork struct {
	JobID    uuid.UUID
	TenantID uuid.UUID
	Format   string
	Status   ImportStatus // preparing: the file is still to be verified and counted
	RowsDone int64        // the last row committed; rows up to it are skipped
}

// FileRow is one row of a card file to tokenize: its number in the file,
// the card's id there, and the card, or Err when the row is malformed.
type FileRow struct {
	N     int64
	OldID string
	Input TokenizeInput
	Err   error
}

// FileRowStatus is what became of one row of a file import.
type FileRowStatus string

// The row statuses.
const (
	FileRowCreated  FileRowStatus = "created"
	FileRowExisting FileRowStatus = "existing" // its business key already had the token
	FileRowFailed   FileRowStatus = "failed"
)

// FileRowCounts sums the rows of one committed batch.
type FileRowCounts struct {
	Created, Existing, Failed int64
}

// MappingLine is one line of a file import's mapping: the row, the card's
// id in the file, and its token (id, fingerprint, masked number) or why it
// failed. It never holds a full card number.
type MappingLine struct {
	Row         int64
	OldID       string
	Status      FileRowStatus
	TokenID     uuid.UUID // uuid.Nil when failed (or the token was deleted since)
	Fingerprint []byte
	Masked      string
	Reason      string // "code: message" of a failed row
}

type importFile struct {
	Format   string `json:"format"`
	Size     int64  `json:"size"`
	RowsDone int64  `json:"rows_done"`
}

// MappingColumns name the columns of a mapping file (CSV), in
// MappingLine.Record's order.
var MappingColumns = []string{"row", "old_id", "token_id", "fingerprint", "masked_number", "status", "reason"}

// Record returns l as a line of MappingColumns: the fingerprint as the API
// shows it (unpadded base64url), blanks for a failed row.
func (l MappingLine) Record() []string {
	line := []string{strconv.FormatInt(l.Row, 10), l.OldID, "", "", "", string(l.Status), l.Reason}
	if l.TokenID != uuid.Nil {
		line[2], line[4] = l.TokenID.String(), l.Masked
		line[3] = base64.RawURLEncoding.EncodeToString(l.Fingerprint)
	}
	return line
}
