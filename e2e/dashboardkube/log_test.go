package dashboardkube

import (
	"context"
	"log/slog"
	"testing"
)

// logger sends a catalog's log lines to the test log, named.
func logger(t *testing.T, name string) *slog.Logger {
	return slog.New(&testHandler{t: t, name: name})
}

type testHandler struct {
	t    *testing.T
	name string
}

func (h *testHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *testHandler) Handle(_ context.Context, r slog.Record) error {
	var attrs []any
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a.Key+"="+a.Value.String())
		return true
	})
	h.t.Logf("[%s] %s %s %v", h.name, r.Level, r.Message, attrs)
	return nil
}

func (h *testHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *testHandler) WithGroup(string) slog.Handler      { return h }
