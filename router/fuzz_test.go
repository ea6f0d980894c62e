package router

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzParseHost checks that any host either fails cleanly or yields a key
// made of valid DNS labels and a valid port: nothing a client writes in a
// Host header can smuggle characters into the routing key.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"3000-sb1.ns.example.com", "sb1.ns.example.com:443", "example.com", "[::1]:80",
		"a.b.c.example.com", "0-x.ns.example.com", "99999-x.ns.example.com", "-.-.example.com", "EXAMPLE.COM.", ".example.com"} {
		f.Add(s)
	}
	p := &keyParser{baseDomains: normalizeDomains([]string{"example.com", "sub.example.com"})}
	f.Fuzz(func(t *testing.T, host string) {
		id, ns, _, matched, err := p.parseHost(host)
		if err != nil || !matched {
			if id != "" || ns != "" {
				t.Fatalf("no match but id=%q ns=%q", id, ns)
			}
			return
		}
		if !isDNSLabel(id) || !isDNSLabel(ns) {
			t.Fatalf("host %q gave invalid labels %q %q", host, id, ns)
		}
	})
}

// FuzzParseHeaders checks the X-Sandbox-* header contract: every accepted
// key is valid, and refused pod addresses never get through.
func FuzzParseHeaders(f *testing.F) {
	f.Add("sb1", "default", "8888", "", "")
	f.Add("sb1", "ns", "65535", "0b3c2e6a-1111-4222-8333-444455556666", "10.1.2.3")
	f.Add("SB", "", "0", "x", "169.254.169.254")
	f.Add("a", "b", "1", "", "::ffff:127.0.0.1")
	p := &keyParser{}
	f.Fuzz(func(t *testing.T, id, ns, port, uid, podIP string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = "router.internal"
		r.Header = http.Header{}
		for k, v := range map[string]string{HeaderSandboxID: id, HeaderSandboxNamespace: ns, HeaderSandboxPort: port,
			HeaderSandboxUID: uid, HeaderSandboxPodIP: podIP} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		k, err := p.parse(r)
		if err != nil {
			return
		}
		if !isDNSLabel(k.Name) || !isDNSLabel(k.Namespace) || k.Port == 0 {
			t.Fatalf("accepted invalid key %+v", k)
		}
		if k.UID != "" && !isUUID(k.UID) {
			t.Fatalf("accepted invalid uid %q", k.UID)
		}
		if a := k.PodIP; a.IsValid() && (a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || a.Zone() != "") {
			t.Fatalf("accepted forbidden pod ip %v", a)
		}
	})
}
