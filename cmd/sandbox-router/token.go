package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/access/scoped"
)

// runToken is the token subcommand: it mints a scoped token (v2 with
// --key, v1 with --secret-file) and prints it, with a curl line that uses
// it.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox-router token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("key", "", "v2: Ed25519 private key (PEM PKCS #8) to sign with")
	kid := fs.String("kid", "", "v2: the key's id (its public key is <kid>.pem in the router's --authz-scoped-token-public-keys)")
	secretFile := fs.String("secret-file", "", "v1: the shared HMAC secret (the router's --authz-scoped-token-secret-file)")
	ns := fs.String("namespace", "default", "the sandbox's namespace")
	name := fs.String("name", "", "the sandbox's name (required)")
	uid := fs.String("uid", "", "v2: the sandbox's UID (required: the token is for this instance only)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	var ports, methods, cidrs listFlag
	var portList, methodList, cidrList []string
	ports.dst, methods.dst, cidrs.dst = &portList, &methodList, &cidrList
	fs.Var(&ports, "port", "v2: allow only these ports (repeat or comma-separate)")
	fs.Var(&methods, "method", "v2: allow only these methods")
	path := fs.String("path", "", "v2: allow only paths under this prefix")
	fs.Var(&cidrs, "client-cidr", "v2: allow only clients in these ranges")
	subject := fs.String("subject", "", "v2: whom the token is for (told to the sandbox with --authz-identity-headers; grants nothing)")
	router := fs.String("router", "http://127.0.0.1:8080", "the router's URL, for the printed curl line and preview link")
	baseDomain := fs.String("base-domain", "", "print a preview link by host name: <scheme>://<port>-<name>.<namespace>.<base-domain>/?<query-param>=<token>")
	pathPrefix := fs.String("path-routing-prefix", "", "print a preview link by path: <router>/<prefix>/<namespace>/<name>/<port>/?<query-param>=<token>")
	queryParam := fs.String("query-param", access.DefaultEntryParam, "the router's --authz-cookie-query-param, for the preview link")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required")
	}
	now := time.Now()
	var tok string
	switch {
	case (*key == "") == (*secretFile == ""):
		return errors.New("give --key (v2) or --secret-file (v1)")
	case *secretFile != "":
		if len(portList)+len(methodList)+len(cidrList) > 0 || *path != "" || *uid != "" || *subject != "" {
			return errors.New("v1 tokens carry namespace, name and expiry only; --port, --method, --path, --client-cidr, --uid and --subject need --key (v2)")
		}
		secret, err := os.ReadFile(*secretFile)
		if err != nil {
			return err
		}
		if tok, err = scoped.MintV1(secret, *ns, *name, *ttl, now); err != nil {
			return err
		}
	default:
		pemData, err := os.ReadFile(*key)
		if err != nil {
			return err
		}
		priv, err := scoped.ParsePrivateKey(pemData)
		if err != nil {
			return fmt.Errorf("%s: %w", *key, err)
		}
		c := scoped.Claims{KeyID: *kid, Namespace: *ns, Name: *name, UID: *uid, Expires: now.Add(*ttl), Methods: methodList, PathPrefix: *path,
			Subject: *subject}
		for _, p := range portList {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return fmt.Errorf("--port %q is not a port", p)
			}
			c.Ports = append(c.Ports, uint16(n))
		}
		for _, s := range cidrList {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("--client-cidr %q: %w", s, err)
			}
			c.ClientCIDRs = append(c.ClientCIDRs, pfx)
		}
		if tok, err = scoped.MintV2(priv, c, now); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "valid until %s for %s/%s; try:\n  curl -H 'Authorization: Bearer %s' -H 'X-Sandbox-ID: %s' -H 'X-Sandbox-Namespace: %s' %s/\n",
		now.Add(*ttl).UTC().Format(time.RFC3339), *ns, *name, tok, *name, *ns, strings.TrimSuffix(*router, "/"))
	port := "8888"
	if len(portList) > 0 {
		port = portList[0]
	}
	links, err := previewLinks(*router, *baseDomain, *pathPrefix, *ns, *name, port, *queryParam, tok)
	if err != nil {
		return err
	}
	for _, l := range links {
		fmt.Fprintf(stderr, "preview link (opens a browser session):\n  %s\n", l)
	}
	return nil
}

// previewLinks are the entry links for a token: by host name under
// baseDomain (the router URL's scheme and port) and by path under
// pathPrefix, for whichever is given.
func previewLinks(routerURL, baseDomain, pathPrefix, ns, name, port, param, token string) ([]string, error) {
	u, err := url.Parse(routerURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("--router %q is not a URL", routerURL)
	}
	query := "?" + url.QueryEscape(param) + "=" + url.QueryEscape(token)
	var links []string
	if baseDomain != "" {
		host := port + "-" + name + "." + ns + "." + strings.Trim(baseDomain, ".")
		if p := u.Port(); p != "" {
			host += ":" + p
		}
		links = append(links, u.Scheme+"://"+host+"/"+query)
	}
	if pathPrefix != "" {
		links = append(links, strings.TrimSuffix(routerURL, "/")+pathPrefix+"/"+ns+"/"+name+"/"+port+"/"+query)
	}
	return links, nil
}

// runKeygen is the keygen subcommand: a new Ed25519 key pair for v2
// tokens, <kid>.key (private, mode 0600) and <kid>.pem (public, for the
// router's key directory) in --dir.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox-router keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kid := fs.String("kid", "", "the key's id (required): letters, digits, '-', '_' and '.'")
	dir := fs.String("dir", ".", "where to write <kid>.key and <kid>.pem (made if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !validKeyID(*kid) {
		return fmt.Errorf("--kid %q: use letters, digits, '-', '_' and '.'", *kid)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	privPath, pubPath := filepath.Join(*dir, *kid+".key"), filepath.Join(*dir, *kid+".pem")
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n%s\n", privPath, pubPath)
	return nil
}

// writeNew writes a file that must not exist yet: a key is never
// overwritten.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func validKeyID(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
