package httpapi

import (
	"encoding/csv"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// WithImportFileLimit caps the card file POST /tokens/imports takes
// (VAULT_IMPORT_FILE_MAX_BYTES); vault.DefaultMaxImportFileBytes when not
// set or not positive.
func WithImportFileLimit(maxBytes int64) Option {
	return func(s *Server) { s.importFileMax = maxBytes }
}

// maxFormValue bounds the provider and format fields of an upload.
const maxFormValue = 64

// isMultipart reports whether req's body is multipart/form-data.
func isMultipart(req *http.Request) bool {
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	return err == nil && mt == echo.MIMEMultipartForm
}

// fileUpload is a decoded upload: its fields, and the file part still to
// be read.
type fileUpload struct {
	provider, format string
	file             *multipart.Part
}

// createFileImport serves POST /tokens/imports with a multipart/form-data
// body: the fields provider ("file") and format, then the part file, the
// OpenPGP-encrypted card file, streamed into the vault as it arrives.
// 202 and the job, which any replica runs.
func (s *Server) createFileImport(c echo.Context) error {
	up, err := readUpload(c.Request())
	if err != nil {
		return err
	}
	job, err := s.svc.CreateFileImport(c.Request().Context(), actor(c),
		vault.CreateFileImportInput{Format: up.format, File: up.file, MaxBytes: s.importFileMax})
	if err != nil {
		return err
	}
	if s.importWaker != nil {
		s.importWaker.Wake()
	}
	return c.JSON(http.StatusAccepted, job.Record())
}

// readUpload reads an upload's fields up to its file part. The fields must
// come first: the file is not buffered.
func readUpload(req *http.Request) (fileUpload, error) {
	mr, err := req.MultipartReader()
	if err != nil {
		return fileUpload{}, badUpload("the body is not a readable multipart/form-data body")
	}
	var up fileUpload
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return fileUpload{}, vault.InvalidParam(vault.CodeParameterMissing, "file", "file is required: the OpenPGP-encrypted card file, after provider and format")
		}
		if err != nil {
			return fileUpload{}, badUpload("the multipart/form-data body could not be read")
		}
		switch part.FormName() {
		case "file":
			if up.provider != vault.ProviderFile {
				return fileUpload{}, vault.InvalidParam(vault.CodeInvalidProvider, "provider", `an upload needs provider "file" before the file part`)
			}
			up.file = part
			return up, nil
		case "provider":
			up.provider, err = formValue(part)
		case "format":
			up.format, err = formValue(part)
		default:
			return fileUpload{}, vault.InvalidParam(vault.CodeParameterInvalid, part.FormName(), "an upload takes the fields provider, format and file only")
		}
		if err != nil {
			return fileUpload{}, err
		}
	}
}

// formValue reads a short field.
func formValue(p *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, maxFormValue+1))
	if err != nil || len(b) > maxFormValue {
		return "", vault.InvalidParam(vault.CodeParameterInvalid, p.FormName(), p.FormName()+" must be a short text field")
	}
	return strings.TrimSpace(string(b)), nil
}

// badUpload is the error of a body that is not multipart/form-data.
func badUpload(msg string) error {
	return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeBodyUnreadable, Message: msg}
}

// importMapping serves GET /tokens/imports/:id/mapping: the file import's
// mapping as CSV (vault.MappingColumns), one line per row of the file.
func (s *Server) importMapping(c echo.Context) error {
	id, err := importID(c)
	if err != nil {
		return err
	}
	return s.answerCSV(c, vault.MappingColumns, "import_id", id, func(line func([]string) error) error {
		return s.svc.ImportMapping(c.Request().Context(), actor(c), id, func(l vault.MappingLine) error { return line(l.Record()) })
	})
}

// answerCSV answers 200 text/csv: the columns, then every line stream
// passes to line. An error of stream before the first line is the answer's
// error; after it, the answer has started, so it ends short and the log
// names the job (idKey: id) and why.
func (s *Server) answerCSV(c echo.Context, columns []string, idKey string, id uuid.UUID, stream func(line func([]string) error) error) error {
	var w *csv.Writer
	err := stream(func(rec []string) error {
		if w == nil {
			w = startCSV(c, columns)
		}
		return w.Write(rec)
	})
	if err != nil && w == nil {
		return err
	}
	if err != nil {
		s.log.Error("mapping cut short", idKey, id, "error", err)
	}
	if w == nil {
		w = startCSV(c, columns)
	}
	w.Flush()
	return nil
}

// startCSV sends a CSV answer's status, headers and column names.
func startCSV(c echo.Context, columns []string) *csv.Writer {
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	res.WriteHeader(http.StatusOK)
	w := csv.NewWriter(res)
	_ = w.Write(columns)
	return w
}
