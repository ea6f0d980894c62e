package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// fakeAPI is a stand-in API server for the unit tests: it keeps objects by
// "resource/name", refuses what forbid says, and records every request.
type fakeAPI struct {
	srv *httptest.Server

	mu      sync.Mutex
	objects map[string]map[string]any // "sandboxclaims/name" -> object
	forbid  map[string]bool           // "verb resource" -> 403
	reqs    []seenRequest
	// respond, when set, answers every request instead.
	respond func(w http.ResponseWriter, r *http.Request)
}

// seenRequest is what a test checks of a request.
type seenRequest struct {
	Method, Path, Query, ContentType, Accept string
	Authorization                            string
	Impersonation                            []string // Impersonate-* header names
	Wrapped                                  bool     // the router's WrapTransport header
	ClientCerts                              int      // certificates the client presented
	Body                                     []byte
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{objects: map[string]map[string]any{}, forbid: map[string]bool{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	// Ask for a client certificate, so the test can tell that none is sent.
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// routerConfig is a config with every kind of router credential set, of
// which Cluster must use none.
func (f *fakeAPI) routerConfig(t *testing.T) *rest.Config {
	t.Helper()
	certPEM, keyPEM := selfSigned(t)
	tokenFile := t.TempDir() + "/router-token"
	if err := os.WriteFile(tokenFile, []byte("router-token-from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &rest.Config{
		Host:            f.srv.URL,
		BearerToken:     "router-token",
		BearerTokenFile: tokenFile,
		Username:        "router",
		Password:        "router-password",
		Impersonate:     rest.ImpersonationConfig{UserName: "system:admin", Groups: []string{"system:masters"}},
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}),
			CertData: certPEM,
			KeyData:  keyPEM,
		},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				r.Header.Set("X-Router-Wrapped", "1")
				return rt.RoundTrip(r)
			})
		},
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (f *fakeAPI) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.reqs...)
}

func (f *fakeAPI) put(resource, name string, obj map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[resource+"/"+name] = obj
}

func (f *fakeAPI) has(resource, name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.objects[resource+"/"+name]
	return ok
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	seen := seenRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"),
		Authorization: r.Header.Get("Authorization"), Wrapped: r.Header.Get("X-Router-Wrapped") != "",
		Body: body,
	}
	for k := range r.Header {
		if strings.HasPrefix(k, "Impersonate-") {
			seen.Impersonation = append(seen.Impersonation, k)
		}
	}
	if r.TLS != nil {
		seen.ClientCerts = len(r.TLS.PeerCertificates)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, seen)
	respond := f.respond
	f.mu.Unlock()
	if respond != nil {
		respond(w, r)
		return
	}

	// /apis/<group>/<version>/namespaces/<ns>/<resource>[/<name>]
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 6 || parts[0] != "apis" || parts[3] != "namespaces" {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	resource, name := parts[5], ""
	if len(parts) > 6 {
		name = parts[6]
	}
	verb := map[string]string{http.MethodGet: "get", http.MethodPost: "create", http.MethodPatch: "patch", http.MethodDelete: "delete"}[r.Method]
	if verb == "get" && name == "" {
		verb = "list"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forbid[verb+" "+resource] {
		writeStatus(w, http.StatusForbidden, "Forbidden", resource+` "`+name+`" is forbidden: User "caller" cannot `+verb+` resource "`+resource+`"`)
		return
	}
	key := resource + "/" + name
	obj, exists := f.objects[key]
	switch verb {
	case "list":
		items := []any{}
		for k, o := range f.objects {
			if strings.HasPrefix(k, resource+"/") {
				items = append(items, map[string]any{"metadata": o["metadata"]})
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "items": items})
	case "create":
		var o map[string]any
		if err := json.Unmarshal(body, &o); err != nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		name = o["metadata"].(map[string]any)["name"].(string)
		if _, ok := f.objects[resource+"/"+name]; ok {
			writeStatus(w, http.StatusConflict, "AlreadyExists", resource+` "`+name+`" already exists`)
			return
		}
		f.objects[resource+"/"+name] = o
		writeJSON(w, http.StatusCreated, o)
	case "get", "patch":
		if !exists {
			writeStatus(w, http.StatusNotFound, "NotFound", resource+` "`+name+`" not found`)
			return
		}
		writeJSON(w, http.StatusOK, obj)
	case "delete":
		if !exists {
			writeStatus(w, http.StatusNotFound, "NotFound", resource+` "`+name+`" not found`)
			return
		}
		var opts struct {
			Preconditions *struct {
				UID *string `json:"uid"`
			} `json:"preconditions"`
		}
		_ = json.Unmarshal(body, &opts)
		uid, _ := obj["metadata"].(map[string]any)["uid"].(string)
		if opts.Preconditions != nil && opts.Preconditions.UID != nil && *opts.Preconditions.UID != uid {
			writeStatus(w, http.StatusConflict, "Conflict", "Precondition failed: UID in precondition: "+*opts.Preconditions.UID+", UID in object meta: "+uid)
			return
		}
		delete(f.objects, key)
		writeJSON(w, http.StatusOK, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Success"})
	default:
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "method not allowed")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	writeJSON(w, code, map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": message, "reason": reason, "code": code,
	})
}

// object is a minimal object of a kind, with owner references when given.
func object(kind, name, uid string, owners ...map[string]any) map[string]any {
	meta := map[string]any{"name": name, "namespace": "team-a", "uid": uid}
	if len(owners) > 0 {
		refs := make([]any, len(owners))
		for i, o := range owners {
			refs[i] = o
		}
		meta["ownerReferences"] = refs
	}
	return map[string]any{"apiVersion": "x/v1", "kind": kind, "metadata": meta}
}

func claimOwner(name, uid string) map[string]any {
	return map[string]any{"apiVersion": ClaimGroup + "/v1beta1", "kind": "SandboxClaim", "name": name, "uid": uid, "controller": true}
}

// selfSigned returns a client certificate and key in PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "router"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
