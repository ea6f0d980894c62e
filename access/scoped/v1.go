package scoped

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The upstream router's scoped-token format (sigs.k8s.io/agent-sandbox
// v1.0.1, sandbox-router/authz): "v1." + base64url(JSON {"ns","name","exp"})
// + "." + base64url(HMAC-SHA256(secret, v1Context + the encoded payload)),
// unpadded; the secret is trimmed of surrounding white space and at least
// 32 bytes; exp is in Unix seconds, exclusive.
const (
	v1Prefix       = "v1."
	v1Context      = "agent-sandbox/scoped-token/v1."
	MinV1SecretLen = 32
)

type v1Claims struct {
	Namespace string `json:"ns"`
	Name      string `json:"name"`
	Exp       int64  `json:"exp"`
}

// NormalizeV1Secret trims a v1 secret as upstream does and checks its
// length.
func NormalizeV1Secret(secret []byte) ([]byte, error) {
	s := bytes.TrimSpace(secret)
	if len(s) < MinV1SecretLen {
		return nil, fmt.Errorf("v1 secret must be at least %d bytes after trimming white space, got %d", MinV1SecretLen, len(s))
	}
	return bytes.Clone(s), nil
}

// MintV1 makes a v1 token for namespace/name valid until now+ttl, as
// upstream's MintScopedToken does.
func MintV1(secret []byte, namespace, name string, ttl time.Duration, now time.Time) (string, error) {
	key, err := NormalizeV1Secret(secret)
	if err != nil {
		return "", err
	}
	if namespace == "" || name == "" {
		return "", errors.New("namespace and name are required")
	}
	if ttl < time.Second {
		return "", errors.New("ttl must be at least a second")
	}
	payload, err := json.Marshal(v1Claims{Namespace: namespace, Name: name, Exp: now.Add(ttl).Unix()})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding.EncodeToString(payload)
	return v1Prefix + enc + "." + base64.RawURLEncoding.EncodeToString(v1MAC(key, enc)), nil
}

func v1MAC(key []byte, encPayload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v1Context))
	m.Write([]byte(encPayload))
	return m.Sum(nil)
}

// verifyV1 checks a v1 token's signature with key, then its claims.
func verifyV1(key []byte, token string, now time.Time) (Claims, error) {
	rest, ok := strings.CutPrefix(token, v1Prefix)
	if !ok {
		return Claims{}, ErrMalformed
	}
	enc, encSig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(encSig, ".") {
		return Claims{}, ErrMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(encSig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sig, v1MAC(key, enc)) {
		return Claims{}, ErrSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c v1Claims
	if err := strictJSON(payload, &c); err != nil || c.Namespace == "" || c.Name == "" || c.Exp <= 0 {
		return Claims{}, ErrMalformed
	}
	if !now.Before(time.Unix(c.Exp, 0)) {
		return Claims{}, ErrExpired
	}
	return Claims{Version: 1, Namespace: c.Namespace, Name: c.Name, Expires: time.Unix(c.Exp, 0)}, nil
}

// strictJSON decodes one JSON object with no unknown fields and nothing
// after it.
func strictJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}
