package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLocalKEKWarningOncePerProcess: a person at a terminal reads one
// sentence; a log file gets one structured line; a KMS URI needs neither.
func TestLocalKEKWarningOncePerProcess(t *testing.T) {
	const local = "local:///tmp/dev/kek.json"
	t.Run("terminal: words, once", func(t *testing.T) {
		var term, logs bytes.Buffer
		n := &kekNotice{human: &term}
		log := slog.New(slog.NewJSONHandler(&logs, nil))
		n.warn(log, local)
		n.warn(log, local)
		assert.Equal(t, 1, strings.Count(term.String(), "\n"), term.String())
		assert.True(t, strings.HasPrefix(term.String(), "warning: the root KEK is a local key file (local:///tmp/dev/kek.json)"), term.String())
		assert.NotContains(t, term.String(), "{", "words, not JSON")
		assert.Empty(t, logs.String())
	})
	t.Run("no terminal: one structured line", func(t *testing.T) {
		var logs bytes.Buffer
		n := newKEKNotice(&bytes.Buffer{}) // a buffer is not a terminal
		log := slog.New(slog.NewJSONHandler(&logs, nil))
		n.warn(log, local)
		n.warn(log, local)
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		require.Len(t, lines, 1)
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
		assert.Equal(t, "WARN", rec["level"])
		assert.Equal(t, local, rec["kek_uri"])
	})
	t.Run("KMS: nothing", func(t *testing.T) {
		var term bytes.Buffer
		n := &kekNotice{human: &term}
		n.warn(slog.New(slog.DiscardHandler), "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k")
		assert.Empty(t, term.String())
	})
}

// TestOneProcessWarnsOnceAcrossItsCommands: the notice lives in the
// command's context, so opening the vault twice in one run warns once.
func TestOneProcessWarnsOnceAcrossItsCommands(t *testing.T) {
	var term bytes.Buffer
	ctx := withKEKNotice(t.Context(), &kekNotice{human: &term})
	for range 3 {
		kekNoticeFrom(ctx).warn(slog.New(slog.DiscardHandler), "local:///tmp/kek.json")
	}
	assert.Equal(t, 1, strings.Count(term.String(), "warning:"))
}
