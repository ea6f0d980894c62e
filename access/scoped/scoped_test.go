package scoped

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestUpstreamV1Fixture: a token minted by the upstream router's own
// MintScopedToken (testdata/upstream-v1, generated once) verifies.
func TestUpstreamV1Fixture(t *testing.T) {
	data, err := os.ReadFile("testdata/upstream-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Secret, Namespace, Name, Token string
		MintedAt                       time.Time `json:"minted_at"`
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secret"), fx.Secret)
	v, err := NewVerifier(VerifierOptions{SecretFile: filepath.Join(dir, "secret"), Now: func() time.Time { return fx.MintedAt }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(fx.Token)
	if err != nil {
		t.Fatalf("upstream's token: %v", err)
	}
	if c.Version != 1 || c.Namespace != fx.Namespace || c.Name != fx.Name || !c.Expires.After(fx.MintedAt) {
		t.Fatalf("claims %+v", c)
	}
	// Ours is the same format: minted here, byte for byte the same shape.
	ours, err := MintV1([]byte(fx.Secret), fx.Namespace, fx.Name, c.Expires.Sub(fx.MintedAt), fx.MintedAt)
	if err != nil {
		t.Fatal(err)
	}
	if ours != fx.Token {
		t.Fatalf("MintV1 gives %s, upstream %s", ours, fx.Token)
	}
}

func TestV1(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef" // 32 bytes
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secret"), secret+"\n")
	now := t0
	v, err := NewVerifier(VerifierOptions{SecretFile: filepath.Join(dir, "secret"), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := MintV1([]byte(secret), "ns", "sb", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(tok); err != nil || c.Namespace != "ns" || c.Name != "sb" {
		t.Fatalf("%+v %v", c, err)
	}
	other, _ := MintV1([]byte(strings.Repeat("x", 32)), "ns", "sb", time.Hour, t0)
	enc, sig, _ := strings.Cut(strings.TrimPrefix(tok, "v1."), ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"ns":"ns","name":"other","exp":9999999999}`))
	cases := map[string]struct {
		tok  string
		want error
	}{
		"another secret":  {other, ErrSignature},
		"payload swapped": {"v1." + forged + "." + sig, ErrSignature},
		"signature cut":   {"v1." + enc + "." + sig[:10], ErrSignature},
		"no signature":    {"v1." + enc, ErrMalformed},
		"extra part":      {tok + ".x", ErrMalformed},
		"bad base64":      {"v1." + enc + ".!!!", ErrMalformed},
		"v2 not set up":   {"v2." + enc + "." + sig, ErrDisabled},
		"not a token":     {"hello", ErrMalformed},
		"empty":           {"", ErrMalformed},
		"over the bound":  {"v1." + strings.Repeat("a", maxTokenLen), ErrMalformed},
	}
	for name, tc := range cases {
		if _, err := v.Verify(tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	now = t0.Add(time.Hour) // exp is exclusive
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("at exp: %v, want expired", err)
	}
	if _, err := MintV1([]byte("short"), "ns", "sb", time.Hour, t0); err == nil {
		t.Error("a short secret minted a token")
	}
	writeFile(t, filepath.Join(dir, "short"), "too short")
	if _, err := NewVerifier(VerifierOptions{SecretFile: filepath.Join(dir, "short")}); err == nil {
		t.Error("a short secret file was taken")
	}
}

func TestV2(t *testing.T) {
	dir := t.TempDir()
	priv, pubPEM := newKey(t)
	writeFile(t, filepath.Join(dir, "k1.pem"), pubPEM)
	now := t0
	v, err := NewVerifier(VerifierOptions{PublicKeyDir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	claims := Claims{KeyID: "k1", Namespace: "ns", Name: "sb", UID: "uid-1", Expires: t0.Add(time.Hour),
		Ports: []uint16{8888}, Methods: []string{"GET"}, PathPrefix: "/app/", ClientCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	tok, err := MintV2(priv, claims, t0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 2 || c.KeyID != "k1" || c.UID != "uid-1" || c.PathPrefix != "/app/" || len(c.Ports) != 1 || len(c.ClientCIDRs) != 1 {
		t.Fatalf("claims %+v", c)
	}
	otherPriv, _ := newKey(t)
	unknown, _ := MintV2(otherPriv, Claims{KeyID: "k9", Namespace: "ns", Name: "sb", UID: "u", Expires: t0.Add(time.Hour)}, t0)
	wrongKey, _ := MintV2(otherPriv, Claims{KeyID: "k1", Namespace: "ns", Name: "sb", UID: "u", Expires: t0.Add(time.Hour)}, t0)
	enc, sig, _ := strings.Cut(strings.TrimPrefix(tok, "v2."), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(enc)
	widened := strings.Replace(string(payload), `"name":"sb"`, `"name":"sb2"`, 1)
	// Algorithm confusion: an HMAC over the same input keyed with the
	// public key's bytes, in the v2 format.
	pub := priv.Public().(ed25519.PublicKey)
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(v2Context + enc))
	confused := "v2." + enc + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	noKid := base64.RawURLEncoding.EncodeToString([]byte(`{"ns":"ns","name":"sb","uid":"u","exp":9999999999}`))
	cases := map[string]struct {
		tok  string
		want error
	}{
		"unknown key id":           {unknown, ErrUnknownKey},
		"signed by another key":    {wrongKey, ErrSignature},
		"claims widened":           {"v2." + base64.RawURLEncoding.EncodeToString([]byte(widened)) + "." + sig, ErrSignature},
		"HMAC with the public key": {confused, ErrMalformed}, // 32 bytes: not an Ed25519 signature
		"no key id":                {"v2." + noKid + "." + sig, ErrUnknownKey},
		"v1 not set up":            {"v1." + enc + "." + sig, ErrDisabled},
		"unknown field":            {"v2." + base64.RawURLEncoding.EncodeToString([]byte(`{"kid":"k1","alg":"HS256"}`)) + "." + sig, ErrMalformed},
	}
	for name, tc := range cases {
		if _, err := v.Verify(tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	now = t0.Add(time.Hour)
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("at exp: %v, want expired", err)
	}
	for _, bad := range []Claims{
		{Namespace: "ns", Name: "sb", UID: "u", Expires: t0.Add(time.Hour)},
		{KeyID: "k1", Namespace: "ns", Name: "sb", Expires: t0.Add(time.Hour)},
		{KeyID: "k1", Namespace: "ns", Name: "sb", UID: "u", Expires: t0},
		{KeyID: "k1", Namespace: "ns", Name: "sb", UID: "u", Expires: t0.Add(time.Hour), PathPrefix: "app"},
	} {
		if _, err := MintV2(priv, bad, t0); err == nil {
			t.Errorf("minted %+v", bad)
		}
	}
}

func TestPermits(t *testing.T) {
	c := Claims{Version: 2, Namespace: "ns", Name: "sb", UID: "u1", Ports: []uint16{8888}, Methods: []string{"GET", "HEAD"},
		PathPrefix: "/app", ClientCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	ok := Request{Namespace: "ns", Name: "sb", UID: "u1", Port: 8888, Method: "GET", Path: "/app/x", Client: netip.MustParseAddr("10.1.2.3")}
	if !c.Permits(ok) {
		t.Fatal("the matching request is refused")
	}
	mismatch := map[string]func(*Request){
		"namespace":       func(r *Request) { r.Namespace = "other" },
		"name":            func(r *Request) { r.Name = "sb2" },
		"uid":             func(r *Request) { r.UID = "u2" },
		"sandbox unknown": func(r *Request) { r.UID = "" },
		"port":            func(r *Request) { r.Port = 9000 },
		"method":          func(r *Request) { r.Method = "POST" },
		"path":            func(r *Request) { r.Path = "/admin" },
		"path sibling":    func(r *Request) { r.Path = "/apple" },
		"path dot-dot":    func(r *Request) { r.Path = "/app/../admin" },
		"path dot":        func(r *Request) { r.Path = "/app/./x" },
		"client":          func(r *Request) { r.Client = netip.MustParseAddr("192.0.2.1") },
		"client unknown":  func(r *Request) { r.Client = netip.Addr{} },
	}
	for name, mutate := range mismatch {
		r := ok
		mutate(&r)
		if c.Permits(r) {
			t.Errorf("%s mismatch permitted", name)
		}
	}
	for _, p := range []string{"/app", "/app/", "/app/a/b"} {
		r := ok
		r.Path = p
		if !c.Permits(r) {
			t.Errorf("path %s refused", p)
		}
	}
	v1 := Claims{Version: 1, Namespace: "ns", Name: "sb"}
	if !v1.Permits(Request{Namespace: "ns", Name: "sb", UID: "anything", Port: 1, Method: "POST", Path: "/x"}) {
		t.Error("a v1 token is bound to namespace and name only")
	}
}

// TestKeysRotateWithoutRestart: a key added to the directory verifies at
// once, a key removed stops verifying, and a broken file keeps the keys
// in force.
func TestKeysRotateWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	privA, pubA := newKey(t)
	privB, pubB := newKey(t)
	writeFile(t, filepath.Join(dir, "a.pem"), pubA)
	var logged syncBuffer
	v, err := NewVerifier(VerifierOptions{PublicKeyDir: dir, Now: func() time.Time { return t0 }, Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Watch(ctx) }()
	defer func() { cancel(); <-done }()
	mint := func(priv ed25519.PrivateKey, kid string) string {
		tok, err := MintV2(priv, Claims{KeyID: kid, Namespace: "ns", Name: "sb", UID: "u", Expires: t0.Add(time.Hour)}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokA, tokB := mint(privA, "a"), mint(privB, "b")
	if _, err := v.Verify(tokA); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	writeFile(t, filepath.Join(dir, "b.pem"), pubB)
	wait("key b", func() bool { _, err := v.Verify(tokB); return err == nil })
	if _, err := v.Verify(tokA); err != nil {
		t.Fatalf("key a during the rotation: %v", err)
	}
	os.Remove(filepath.Join(dir, "a.pem"))
	wait("key a gone", func() bool { _, err := v.Verify(tokA); return errors.Is(err, ErrUnknownKey) })
	writeFile(t, filepath.Join(dir, "c.pem"), "not a key")
	// The broken file is refused; b goes on verifying.
	wait("the failed reload", func() bool { return strings.Contains(logged.String(), "reload failed") })
	if _, err := v.Verify(tokB); err != nil {
		t.Fatalf("key b after a broken file: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	tok, _ := MintV2(priv, Claims{KeyID: "k", Namespace: "ns", Name: "sb", UID: "u", Expires: t0.Add(time.Hour), Ports: []uint16{1},
		ClientCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, t0)
	v1, _ := MintV1([]byte(strings.Repeat("s", 32)), "ns", "sb", time.Hour, t0)
	for _, s := range []string{tok, v1, "v2.", "v1..", "v2.e30.AAAA", tok + "x"} {
		f.Add(s)
	}
	v := &Verifier{now: func() time.Time { return t0 }}
	v.keys.Store(&keySet{secret: []byte(strings.Repeat("s", 32)), public: map[string]ed25519.PublicKey{"k": priv.Public().(ed25519.PublicKey)}})
	f.Fuzz(func(t *testing.T, s string) {
		c, err := v.Verify(s)
		if err != nil {
			return
		}
		if c.Namespace == "" || c.Name == "" || !c.Expires.After(t0) || c.Version == 2 && c.UID == "" {
			t.Fatalf("%q verified with claims %+v", s, c)
		}
	})
}

func FuzzUnderPrefix(f *testing.F) {
	for _, s := range [][2]string{{"/app/x", "/app"}, {"/app/../x", "/app"}, {"/apple", "/app"}, {"/", "/"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, path, prefix string) {
		if !underPrefix(path, prefix) {
			return
		}
		if !strings.HasPrefix(path, prefix) || strings.Contains("/"+path+"/", "/../") || strings.Contains("/"+path+"/", "/./") {
			t.Fatalf("%q accepted under %q", path, prefix)
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
