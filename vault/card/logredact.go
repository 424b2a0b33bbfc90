package card

import (
	"context"
	"log/slog"
)

// RedactingHandler is a slog.Handler that masks anything that looks like a
// card number in the message and in every string attribute before passing
// the record on: the last line of defence behind typed PANs.
type RedactingHandler struct {
	next slog.Handler
}

// NewRedactingHandler returns a handler that masks PAN-like digit runs and
// then writes through next.
func NewRedactingHandler(next slog.Handler) *RedactingHandler {
	return &RedactingHandler{next: next}
}

// Enabled reports whether next handles level.
func (h *RedactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle masks the record and passes it to next, returning next's error.
func (h *RedactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, MaskPANs(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs returns a handler whose preset attributes are masked too.
func (h *RedactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		masked[i] = redactAttr(a)
	}
	return &RedactingHandler{next: h.next.WithAttrs(masked)}
}

// WithGroup returns a handler that opens group on next.
func (h *RedactingHandler) WithGroup(name string) slog.Handler {
	return &RedactingHandler{next: h.next.WithGroup(name)}
}

// redactAttr masks string values, recursing into groups; other kinds (and
// LogValuers, which resolve first) are rendered as strings and masked.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, MaskPANs(v.String()))
	case slog.KindGroup:
		group := v.Group()
		out := make([]any, len(group))
		for i, g := range group {
			out[i] = redactAttr(g)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		return slog.String(a.Key, MaskPANs(v.String()))
	case slog.KindInt64, slog.KindUint64:
		if s := v.String(); ContainsPAN(s) {
			return slog.String(a.Key, MaskPANs(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
