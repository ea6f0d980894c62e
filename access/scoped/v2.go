package scoped

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The v2 format: "v2." + base64url(JSON claims) + "." +
// base64url(Ed25519 signature over v2Context + the encoded payload),
// unpadded. The claims name their key ("kid"); there is no algorithm
// field to confuse: a v2 token is Ed25519 or nothing, and v1's HMAC
// secret is never a v2 key.
const (
	v2Prefix  = "v2."
	v2Context = "sandbox-router/scoped-token/v2."
	// maxTokenLen bounds what is decoded at all.
	maxTokenLen = 8 << 10
)

type v2Claims struct {
	KeyID     string   `json:"kid"`
	Namespace string   `json:"ns"`
	Name      string   `json:"name"`
	UID       string   `json:"uid"`
	IssuedAt  int64    `json:"iat,omitempty"`
	Exp       int64    `json:"exp"`
	Ports     []uint16 `json:"ports,omitempty"`
	Methods   []string `json:"methods,omitempty"`
	Path      string   `json:"path,omitempty"`
	CIDRs     []string `json:"cidrs,omitempty"`
	Subject   string   `json:"sub,omitempty"`
}

// MintV2 signs c (its KeyID, Namespace, Name, UID and Expires are
// required) with key.
func MintV2(key ed25519.PrivateKey, c Claims, now time.Time) (string, error) {
	if c.KeyID == "" || c.Namespace == "" || c.Name == "" || c.UID == "" {
		return "", errors.New("key id, namespace, name and uid are required")
	}
	if !c.Expires.After(now) {
		return "", errors.New("the token would be expired already")
	}
	if c.PathPrefix != "" && !strings.HasPrefix(c.PathPrefix, "/") {
		return "", errors.New("the path prefix must start with /")
	}
	p := v2Claims{KeyID: c.KeyID, Namespace: c.Namespace, Name: c.Name, UID: c.UID, IssuedAt: now.Unix(), Exp: c.Expires.Unix(),
		Ports: c.Ports, Methods: c.Methods, Path: c.PathPrefix, Subject: c.Subject}
	for _, pfx := range c.ClientCIDRs {
		p.CIDRs = append(p.CIDRs, pfx.String())
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(key, []byte(v2Context+enc))
	return v2Prefix + enc + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// verifyV2 finds the token's key among keys, checks the signature, then
// the claims.
func verifyV2(keys map[string]ed25519.PublicKey, token string, now time.Time) (Claims, error) {
	rest, ok := strings.CutPrefix(token, v2Prefix)
	if !ok {
		return Claims{}, ErrMalformed
	}
	enc, encSig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(encSig, ".") {
		return Claims{}, ErrMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(encSig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Claims{}, ErrMalformed
	}
	payload, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	// The key id is read before the signature is checked (it says which
	// key checks it); nothing else of the payload is trusted until then.
	var p v2Claims
	if err := strictJSON(payload, &p); err != nil {
		return Claims{}, ErrMalformed
	}
	key, ok := keys[p.KeyID]
	if !ok {
		return Claims{}, ErrUnknownKey
	}
	if !ed25519.Verify(key, []byte(v2Context+enc), sig) {
		return Claims{}, ErrSignature
	}
	if p.Namespace == "" || p.Name == "" || p.UID == "" || p.Exp <= 0 || p.Path != "" && !strings.HasPrefix(p.Path, "/") {
		return Claims{}, ErrMalformed
	}
	if !now.Before(time.Unix(p.Exp, 0)) {
		return Claims{}, ErrExpired
	}
	c := Claims{Version: 2, KeyID: p.KeyID, Namespace: p.Namespace, Name: p.Name, UID: p.UID, Expires: time.Unix(p.Exp, 0),
		Ports: p.Ports, Methods: p.Methods, PathPrefix: p.Path, Subject: p.Subject}
	for _, s := range p.CIDRs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		c.ClientCIDRs = append(c.ClientCIDRs, pfx.Masked())
	}
	return c, nil
}
