package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sandbox-router/sandbox-router/access/scoped"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// MintRequest is the minting endpoint's request body.
type MintRequest struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// TTL is a Go duration ("15m"), at least MinMintTTL; empty: the
	// default.
	TTL string `json:"ttl,omitempty"`
	// The optional limits of the token (see scoped.Claims).
	Ports       []uint16 `json:"ports,omitempty"`
	Methods     []string `json:"methods,omitempty"`
	PathPrefix  string   `json:"pathPrefix,omitempty"`
	ClientCIDRs []string `json:"clientCIDRs,omitempty"`
}

// The bounds of a request: its body, and what it may ask a token to
// carry, so that every token minted fits in a session cookie (a claim
// with a character JSON escapes would grow six-fold: none is accepted).
const (
	maxMintRequest = 16 << 10
	maxMintList    = 16
	maxMintMethod  = 20
	maxMintPath    = 512
)

// parse reads and checks a request body; every error is a 400.
func (m *Minter) parse(body io.Reader) (MintRequest, scoped.Claims, error) {
	req, claims, err := m.parseBody(body)
	if err != nil {
		return req, claims, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Detail: err.Error()}
	}
	return req, claims, nil
}

func (m *Minter) parseBody(body io.Reader) (MintRequest, scoped.Claims, error) {
	var req MintRequest
	dec := json.NewDecoder(io.LimitReader(body, maxMintRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, scoped.Claims{}, fmt.Errorf("the body is not a token request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, scoped.Claims{}, errors.New("the body holds more than one JSON object")
	}
	claims, err := m.claimsFor(req)
	return req, claims, err
}

// claimsFor checks a request and makes the claims of its token (all but
// the key, UID and subject, which minting adds).
func (m *Minter) claimsFor(req MintRequest) (scoped.Claims, error) {
	if !resolver.IsDNSLabel(req.Namespace) || !resolver.IsDNSLabel(req.Name) {
		return scoped.Claims{}, errors.New("namespace and name must be DNS-1123 labels")
	}
	ttl := m.opts.DefaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < MinMintTTL {
			return scoped.Claims{}, fmt.Errorf("ttl %q is not a duration of at least %s", req.TTL, MinMintTTL)
		}
		if d > m.opts.MaxTTL {
			return scoped.Claims{}, fmt.Errorf("ttl %s is longer than the router allows (%s)", d, m.opts.MaxTTL)
		}
		ttl = d
	}
	if len(req.Ports) > maxMintList || len(req.Methods) > maxMintList || len(req.ClientCIDRs) > maxMintList {
		return scoped.Claims{}, fmt.Errorf("at most %d ports, methods and clientCIDRs", maxMintList)
	}
	claims := scoped.Claims{Namespace: req.Namespace, Name: req.Name, Expires: m.now().Add(ttl), Ports: req.Ports, PathPrefix: req.PathPrefix}
	if slices.Contains(req.Ports, 0) {
		return scoped.Claims{}, errors.New("ports must be 1-65535")
	}
	for _, meth := range req.Methods {
		if len(meth) > maxMintMethod || !httpguts.ValidHeaderFieldName(meth) || strings.ToUpper(meth) != meth {
			return scoped.Claims{}, fmt.Errorf("method %q is not an HTTP method in upper case", meth)
		}
		claims.Methods = append(claims.Methods, meth)
	}
	if req.PathPrefix != "" && !validMintPath(req.PathPrefix) {
		return scoped.Claims{}, fmt.Errorf("pathPrefix must start with / and hold at most %d printable ASCII characters, none of \" < > \\ ? #", maxMintPath)
	}
	for _, s := range req.ClientCIDRs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return scoped.Claims{}, fmt.Errorf("clientCIDRs: %v", err)
		}
		if pfx.Addr().Is4In6() {
			return scoped.Claims{}, fmt.Errorf("clientCIDRs: write %s as an IPv4 range (client addresses are compared unmapped)", s)
		}
		claims.ClientCIDRs = append(claims.ClientCIDRs, pfx.Masked())
	}
	return claims, nil
}

// validMintPath reports whether p can be a token's path prefix as it is:
// a path, in characters JSON and URLs carry unescaped.
func validMintPath(p string) bool {
	if len(p) > maxMintPath || !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"<>\?#`, c) >= 0 {
			return false
		}
	}
	return true
}

// links builds the entry links of a token: none when browser sessions are
// off or the token does not allow the GET that opens one; else to the
// token's first port (8888 when any) at its path prefix, by host name
// and by path as configured, on the public URL (or the scheme and host
// the caller used, when it is a plain host[:port]).
func (m *Minter) links(r *http.Request, sb resolver.Key, claims scoped.Claims, token string) []string {
	o := &m.opts
	if m.c.sessions.Cookie == "" || (len(claims.Methods) > 0 && !slices.Contains(claims.Methods, http.MethodGet)) {
		return nil
	}
	scheme, host, port := m.publicAddress(r)
	if host == "" {
		return nil
	}
	sbPort := uint16(8888)
	if len(claims.Ports) > 0 {
		sbPort = claims.Ports[0]
	}
	path := "/"
	if claims.PathPrefix != "" {
		path = claims.PathPrefix
	}
	query := "?" + url.QueryEscape(o.EntryParam) + "=" + url.QueryEscape(token)
	withPort := func(h string) string {
		switch {
		case port != "":
			return net.JoinHostPort(h, port)
		case strings.Contains(h, ":"): // an IPv6 address
			return "[" + h + "]"
		}
		return h
	}
	var links []string
	if label := strconv.Itoa(int(sbPort)) + "-" + sb.Name; o.BaseDomain != "" && len(label) <= 63 {
		links = append(links, scheme+"://"+withPort(label+"."+sb.Namespace+"."+o.BaseDomain)+path+query)
	}
	if o.PathPrefix != "" {
		links = append(links, scheme+"://"+withPort(host)+o.PathPrefix+"/"+sb.Namespace+"/"+sb.Name+"/"+strconv.Itoa(int(sbPort))+path+query)
	}
	return links
}

// publicAddress is where users reach the router: the configured public
// URL, or the request's scheme and Host when that is a host name or an
// address with an optional numeric port ("" host otherwise: no links
// built from what a client wrote).
func (m *Minter) publicAddress(r *http.Request) (scheme, host, port string) {
	if u := m.opts.PublicURL; u != nil {
		return u.Scheme, u.Hostname(), u.Port()
	}
	scheme = "http"
	if m.c.https(r) {
		scheme = "https"
	}
	host, port = r.Host, ""
	if strings.Contains(host, ":") {
		var err error
		if host, port, err = net.SplitHostPort(r.Host); err != nil {
			return "", "", ""
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", "", ""
		}
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return "", "", ""
	}
	return scheme, host, port
}

// validHostName reports whether h is a DNS name of letters, digits, '-'
// and '.'.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if !resolver.IsDNSLabel(strings.ToLower(label)) {
			return false
		}
	}
	return true
}
