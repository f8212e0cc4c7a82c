package cluster

import (
	"context"
	"log/slog"
)

// levelAtLeast drops records below min: protoactor logs every actor start at INFO.
type levelAtLeast struct {
	h   slog.Handler
	min slog.Level
}

func (l levelAtLeast) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}
func (l levelAtLeast) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l levelAtLeast) WithAttrs(a []slog.Attr) slog.Handler {
	return levelAtLeast{h: l.h.WithAttrs(a), min: l.min}
}
func (l levelAtLeast) WithGroup(n string) slog.Handler {
	return levelAtLeast{h: l.h.WithGroup(n), min: l.min}
}
