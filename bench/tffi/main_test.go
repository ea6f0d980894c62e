package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/bench/tffi/tffi"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{
		"-sandbox", "sb1", "-namespace", "team-a", "-router", "https://r.example.com",
		"-host", "{sandbox}.{namespace}.example.com", "-port", "9000", "-path", "/x",
		"-H", "Authorization: Bearer t", "-H", "X-Extra:1", "-n", "7", "-modes", "ready, probe",
		"-metrics", "http://127.0.0.1:9090", "-timeout", "30s", "-insecure", "-kubeconfig", "/k", "-context", "c",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sandbox != "sb1" || cfg.Namespace != "team-a" || cfg.Router != "https://r.example.com" ||
		cfg.Host != "{sandbox}.{namespace}.example.com" || cfg.Port != 9000 || cfg.Path != "/x" ||
		cfg.N != 7 || cfg.Metrics != "http://127.0.0.1:9090" || cfg.Timeout != 30*time.Second ||
		!cfg.Insecure || cfg.Kubeconfig != "/k" || cfg.Context != "c" {
		t.Errorf("config %+v", cfg)
	}
	if !slices.Equal(cfg.Modes, []string{tffi.ModeReady, tffi.ModeProbe}) {
		t.Errorf("modes %q", cfg.Modes)
	}
	if cfg.Headers.Get("Authorization") != "Bearer t" || cfg.Headers.Get("X-Extra") != "1" {
		t.Errorf("headers %v", cfg.Headers)
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := parseFlags([]string{"-sandbox", "sb1", "-router", "http://127.0.0.1:8080"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "default" || cfg.Path != "/" || cfg.N != 20 || cfg.Port != 0 || cfg.Timeout != 5*time.Minute ||
		!slices.Equal(cfg.Modes, []string{tffi.ModeProbe, tffi.ModeReady}) || cfg.Metrics != "" || cfg.Host != "" {
		t.Errorf("defaults %+v", cfg)
	}
}

func TestParseFlagsRefuses(t *testing.T) {
	base := []string{"-sandbox", "sb1", "-router", "http://127.0.0.1:8080"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no sandbox", []string{"-router", "http://r"}, "sandbox is required"},
		{"no router", []string{"-sandbox", "sb1"}, "router is required"},
		{"bad header", append(slices.Clone(base), "-H", "no colon"), "is not 'Name: value'"},
		{"header name with a space", append(slices.Clone(base), "-H", "A B: c"), "is not 'Name: value'"},
		{"unknown mode", append(slices.Clone(base), "-modes", "probe,fast"), `mode "fast"`},
		{"empty modes", append(slices.Clone(base), "-modes", ","), "no mode"},
		{"zero n", append(slices.Clone(base), "-n", "0"), "at least one wake-up"},
		{"positional", append(slices.Clone(base), "extra"), "unexpected arguments"},
		{"unknown flag", append(slices.Clone(base), "-bogus"), "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one with %q", err, tt.want)
			}
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
