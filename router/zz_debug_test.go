package router

import (
	"context"
	"io"
	"net/http"
	"testing"
)

func TestZZH2Stall(t *testing.T) {
	for _, proto := range []string{viaH1, viaH2C} {
		env := newProxyEnv(t, nil)
		be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "denied", http.StatusForbidden)
		}), false)
		pr, pw := io.Pipe()
		go pw.Write([]byte("0123456789"))
		done := make(chan response, 1)
		go func() { done <- doRequest(env.client(proto), env.sandboxRequest(context.Background(), proto, http.MethodPost, "/", be.port, pr)) }()
		res := recv(t, done, proto+" response while the body stalls")
		t.Logf("%s: %d %q %v", proto, res.status, res.body, res.err)
		pw.Close()
	}
}
