package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/access/scoped"
)

func TestKeygenAndToken(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := runKeygen([]string{"--kid", "2026-12", "--dir", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "2026-12.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key %v %v, want mode 0600", fi, err)
	}
	if err := runKeygen([]string{"--kid", "2026-12", "--dir", dir}, io.Discard, io.Discard); err == nil {
		t.Fatal("keygen overwrote a key")
	}
	keys := t.TempDir()
	pub, _ := os.ReadFile(filepath.Join(dir, "2026-12.pem"))
	os.WriteFile(filepath.Join(keys, "2026-12.pem"), pub, 0o644)
	v, err := scoped.NewVerifier(scoped.VerifierOptions{PublicKeyDir: keys})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	var notes bytes.Buffer
	err = runToken([]string{"--key", filepath.Join(dir, "2026-12.key"), "--kid", "2026-12", "--namespace", "team-a", "--name", "nb",
		"--uid", "u-1", "--ttl", "10m", "--port", "8888,9000", "--method", "GET", "--path", "/lab", "--client-cidr", "10.0.0.0/8",
		"--subject", "alice", "--router", "https://sandboxes.example.com:8443", "--base-domain", "sandboxes.example.com",
		"--path-routing-prefix", "/s"}, &out, &notes)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "team-a" || c.Name != "nb" || c.UID != "u-1" || len(c.Ports) != 2 || c.PathPrefix != "/lab" || len(c.ClientCIDRs) != 1 ||
		c.Subject != "alice" || c.Expires.Sub(time.Now()) > 10*time.Minute {
		t.Fatalf("claims %+v", c)
	}
	for _, link := range []string{"https://8888-nb.team-a.sandboxes.example.com:8443/?sandbox_token=" + tok,
		"https://sandboxes.example.com:8443/s/team-a/nb/8888/?sandbox_token=" + tok} {
		if !strings.Contains(notes.String(), link) {
			t.Errorf("no preview link %s in:\n%s", link, notes.String())
		}
	}

	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(strings.Repeat("s", 40)+"\n"), 0o600)
	out.Reset()
	if err := runToken([]string{"--secret-file", secret, "--namespace", "ns", "--name", "sb"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	v1, _ := scoped.NewVerifier(scoped.VerifierOptions{SecretFile: secret})
	if c, err := v1.Verify(strings.TrimSpace(out.String())); err != nil || c.Version != 1 || c.Name != "sb" {
		t.Fatalf("v1: %+v %v", c, err)
	}

	for _, bad := range [][]string{
		{"--namespace", "ns", "--name", "sb"},                                                                         // neither key nor secret
		{"--key", filepath.Join(dir, "2026-12.key"), "--kid", "2026-12", "--name", "sb"},                              // v2 without uid
		{"--secret-file", secret, "--name", "sb", "--port", "8888"},                                                   // v1 with a v2 limit
		{"--key", filepath.Join(dir, "2026-12.key"), "--kid", "2026-12", "--name", "sb", "--uid", "u", "--port", "0"}, // no such port
		{"--secret-file", secret}, // no name
	} {
		if err := runToken(bad, io.Discard, io.Discard); err == nil {
			t.Errorf("token %v: no error", bad)
		}
	}
	if err := runKeygen([]string{"--kid", "../escape", "--dir", dir}, io.Discard, io.Discard); err == nil {
		t.Error("a key id with a path was taken")
	}
}

// TestMinterKeyMustBeVerifiable: the router refuses to start minting with
// a key whose public half its verifier would not find under the key's id.
func TestMinterKeyMustBeVerifiable(t *testing.T) {
	keys, other := t.TempDir(), t.TempDir()
	for _, dir := range []string{keys, other} {
		if err := runKeygen([]string{"--kid", "k1", "--dir", dir}, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, key, kid, want string
	}{
		{"no public key under its id", filepath.Join(keys, "k1.key"), "k2", "k2.pem"},
		{"another key's public half", filepath.Join(other, "k1.key"), "", "is not its public key"},
		{"not a key", filepath.Join(keys, "k1.pem"), "k1", "authz-mint-signing-key"},
	} {
		cfg := &config{AuthzMintKey: tc.key, AuthzMintKeyID: tc.kid, AuthzScopedKeyDir: keys}
		if _, err := newMinter(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

// TestVersionText: the version subcommand says module version, commit
// (and whether the tree was modified) and Go version from the build info.
func TestVersionText(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-06T03:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	want := "sandbox-router v0.3.0\ncommit abc123 (modified)\ncommitted 2026-12-06T03:00:00Z\ngo go1.26.8\n"
	if got := versionText(info); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	info.Settings = nil
	if got := versionText(info); !strings.Contains(got, "commit unknown\n") {
		t.Errorf("without VCS info: %q", got)
	}
}
