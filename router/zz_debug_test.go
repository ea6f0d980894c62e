package router

import (
	"context"
	"github.com/sandbox-router/sandbox-router/resolver"
	"io"
	"net/http"
	"testing"
)

func TestZZEarly(t *testing.T) {
	for _, proto := range []string{viaH1, viaH2C} {
		for _, upH2C := range []bool{false, true} {
			for _, chunked := range []bool{false, true} {
				env := newProxyEnv(t, nil)
				be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPost {
						http.Error(w, "denied", http.StatusForbidden)
						return
					}
					io.WriteString(w, "get ok")
				}), upH2C)
				if upH2C {
					env.res.set("default", "sb1", resolver.StateRunning, resolver.ProtocolH2C)
				}
				client := env.client(proto)
				for i := 0; i < 20; i++ {
					req := env.sandboxRequest(context.Background(), proto, http.MethodPost, "/", be.port, newPatternReader(1, 4<<20))
					if !chunked {
						req.ContentLength = 4 << 20
					}
					res := doRequest(client, req)
					if res.err != nil || res.status != 403 {
						t.Fatalf("%v %s %v POST %d: %d %q %v", upH2C, proto, chunked, i, res.status, res.body, res.err)
					}
					res = doRequest(client, env.sandboxRequest(context.Background(), proto, http.MethodGet, "/", be.port, nil))
					if res.err != nil || res.body != "get ok" {
						t.Fatalf("%v %s %v GET %d: %d %q %v %v", upH2C, proto, chunked, i, res.status, res.body, res.err, res.header)
					}
				}
			}
		}
	}
}
