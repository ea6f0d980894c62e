package main

import (
	"io"
	"strings"
	"testing"
)

// Mistakes are refused before anything is compiled or sent.
func TestRefused(t *testing.T) {
	env := func(sde string) func(string) string {
		return func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return sde
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		sde  string
		want string
	}{
		{"no command", nil, "", "usage"},
		{"unknown command", []string{"load"}, "", "usage"},
		{"bad SOURCE_DATE_EPOCH", []string{"build", "-out", t.TempDir()}, "yesterday", "SOURCE_DATE_EPOCH"},
		{"build arguments", []string{"build", "extra"}, "", "unexpected arguments"},
		{"push without destination", []string{"push"}, "", "one destination"},
		{"push to a digest", []string{"push", "-layout", t.TempDir(), "example.com/r@sha256:" + strings.Repeat("0", 64)}, "", "not a digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, io.Discard, env(tc.sde))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
}
