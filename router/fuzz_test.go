package router

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sandbox-router/sandbox-router/resolver"
)

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
		if !resolver.IsDNSLabel(k.Name) || !resolver.IsDNSLabel(k.Namespace) || k.Port == 0 {
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

// FuzzClientTimeout: X-Sandbox-Timeout is refused or gives a positive
// deadline no longer than the cap.
func FuzzClientTimeout(f *testing.F) {
	for _, s := range []string{"30", "4.5", "0", "-1", "1e3", "Inf", "NaN", "0x10", ".5", "99999999999999999999", "0.0000000001"} {
		f.Add(s)
	}
	const max = time.Hour
	f.Fuzz(func(t *testing.T, v string) {
		d, present, ok := clientTimeout(http.Header{HeaderSandboxTimeout: {v}}, max)
		if !ok || !present {
			if d != 0 || present {
				t.Fatalf("%q refused but gave %v %v", v, d, present)
			}
			return
		}
		if d <= 0 || d > max {
			t.Fatalf("%q gave %v", v, d)
		}
	})
}

// FuzzResponseConnectionTokens: any raw head (as a hostile sandbox may
// send) yields canonical header names, never a panic, and never drops a
// name that net/http's parsed Connection header carries.
func FuzzResponseConnectionTokens(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nConnection: close, X-A\r\n\r\n", 0)
	f.Add("HTTP/1.1 103 Early\r\nConnection: X-B\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close,\r\n X-C\r\n\r\n", 1)
	f.Add("HTTP/1.1 200 OK\nconnection:close\n\n", 0)
	f.Fuzz(func(t *testing.T, raw string, interim int) {
		resp := &http.Response{ProtoMajor: 1, ProtoMinor: 1, Close: true, Header: http.Header{}}
		for _, tok := range responseConnectionTokens(resp, []byte(raw), interim) {
			if tok == "" || strings.ContainsAny(tok, ", \r\n") && httpguts.ValidHeaderFieldName(tok) {
				t.Fatalf("token %q from %q", tok, raw)
			}
		}
	})
}

// FuzzParsePath: a path-routed target either fails cleanly or names a
// valid key, its canonical prefix is made of that key, and what the
// sandbox gets is the target's tail after it, as sent.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/p/ns/sb1/8888/x?y=1", "/p/ns/sb1/8888", "/p/a/b/0", "/p//x/1", "/p/ns/sb1/8888/%2e%2e/x",
		"/pp/ns/sb1/1", "/p/ns/sb1/8888?", "/p/ns/sb1/65536/"} {
		f.Add(s)
	}
	p := &keyParser{pathPrefix: "/p"}
	f.Fuzz(func(t *testing.T, target string) {
		var k routingKey
		matched, err := p.parsePath(&k, target)
		if !matched || err != nil {
			if k.PathPrefix != "" || k.restURL != nil {
				t.Fatalf("%q: no key, yet %+v", target, k)
			}
			return
		}
		if !resolver.IsDNSLabel(k.Name) || !resolver.IsDNSLabel(k.Namespace) || k.Port == 0 {
			t.Fatalf("%q: invalid key %+v", target, k)
		}
		if k.PathPrefix != "/p/"+k.Namespace+"/"+k.Name+"/"+strconv.Itoa(int(k.Port)) {
			t.Fatalf("%q: prefix %q", target, k.PathPrefix)
		}
		if !strings.HasPrefix(k.restTarget, "/") || !strings.HasSuffix(target, strings.TrimPrefix(k.restTarget, "/")) {
			t.Fatalf("%q: the sandbox would get %q", target, k.restTarget)
		}
	})
}

// FuzzWithoutCredentialCookies: whatever a client writes in Cookie, no
// pair named like a credential cookie (the session cookie, the
// dashboard's; under any of their prefixes) reaches the sandbox, and
// every other non-empty pair does, in order.
func FuzzWithoutCredentialCookies(f *testing.F) {
	for _, s := range []string{"sb-session=t; a=1", "__Host-sb-session=t", "a=1;__Secure-sb-session=t;b", "sb-session", " ; ;sb-session=x=y", "__Host-dash=t; sb-session=u"} {
		f.Add(s, "b=2")
	}
	p := &forwardPolicy{credentialCookies: []string{"sb-session", "dash"}}
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		var want []string
		for _, v := range []string{v1, v2} {
			for pair := range strings.SplitSeq(v, ";") {
				pair = strings.TrimSpace(pair)
				name, _, _ := strings.Cut(pair, "=")
				if bare := strings.TrimPrefix(strings.TrimPrefix(name, "__Host-"), "__Secure-"); pair != "" && bare != "sb-session" && bare != "dash" {
					want = append(want, pair)
				}
			}
		}
		var got []string
		for _, v := range p.withoutCredentialCookies([]string{v1, v2}) {
			for pair := range strings.SplitSeq(v, ";") {
				if pair = strings.TrimSpace(pair); pair != "" {
					got = append(got, pair)
				}
			}
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%q %q: kept %q, want %q", v1, v2, got, want)
		}
	})
}

// FuzzConfineCookies: whatever a sandbox sets, no cookie keeps a Domain,
// and under path routing every cookie's Path lies under the sandbox's
// prefix.
func FuzzConfineCookies(f *testing.F) {
	for _, s := range []string{"a=1; Domain=.example.com; Path=/", "a=1; path=x", "a=1;DOMAIN=example.com;Path=/p/x/y/1/../..", "a=1", "=;;Path"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	const prefix = "/p/ns/sb1/8888"
	f.Fuzz(func(t *testing.T, v string, pathRouted bool) {
		pfx := ""
		if pathRouted {
			pfx = prefix
		}
		out := confineCookies([]string{v}, pfx)
		if len(out) != 1 {
			t.Fatalf("%q: %d values", v, len(out))
		}
		paths := 0
		for i, attr := range strings.Split(out[0], ";") {
			if i == 0 {
				continue // the name=value pair
			}
			name, value, _ := strings.Cut(strings.TrimSpace(attr), "=")
			if strings.EqualFold(name, "Domain") {
				t.Fatalf("%q: kept a Domain: %q", v, out[0])
			}
			if strings.EqualFold(name, "Path") {
				paths++
				if pathRouted && !strings.HasPrefix(strings.TrimSpace(value), prefix) {
					t.Fatalf("%q: Path %q outside %s", v, value, prefix)
				}
			}
		}
		if pathRouted && paths == 0 {
			t.Fatalf("%q: no Path under path routing: %q", v, out[0])
		}
	})
}
