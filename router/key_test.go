package router

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/sandbox-router/sandbox-router/sandboxhost"
)

func TestParseRoutingKey(t *testing.T) {
	p := &keyParser{baseDomains: sandboxhost.NewDomains([]string{"sandbox.example.com", "example.com", ".alt.test."})}
	tests := []struct {
		name    string
		host    string
		headers map[string]string
		wantErr *keyError
		want    routingKey
	}{
		{name: "host with port", host: "3000-sb1.team-a.sandbox.example.com",
			want: routingKey{Port: 3000, FromHost: true}},
		{name: "host without port uses header port", host: "sb1.team-a.sandbox.example.com:8443",
			headers: map[string]string{HeaderSandboxPort: "9000"}, want: routingKey{Port: 9000, FromHost: true}},
		{name: "host default port", host: "SB1.Team-A.sandbox.example.com.", want: routingKey{Port: DefaultPort, FromHost: true}},
		{name: "longest base domain wins", host: "sb1.team-a.sandbox.example.com", want: routingKey{Port: DefaultPort, FromHost: true}},
		{name: "second base domain", host: "sb1.team-a.alt.test", want: routingKey{Port: DefaultPort, FromHost: true}},
		{name: "digits-dash name needs explicit port", host: "8888-123-x.team-a.example.com", want: routingKey{Port: 8888, FromHost: true}},
		{name: "too many labels", host: "a.sb1.team-a.example.com.evil", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxNamespace: "team-a"},
			want: routingKey{Port: DefaultPort}},
		{name: "wrong shape under base", host: "x.sb1.team-a.alt.test", wantErr: errInvalidHost},
		{name: "single label under base", host: "sb1.alt.test", wantErr: errInvalidHost},
		{name: "bad namespace in host", host: "sb1.Team_A.alt.test", wantErr: errInvalidNS},
		{name: "base domain itself falls back to headers", host: "example.com",
			headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxNamespace: "team-a"}, want: routingKey{Port: DefaultPort}},
		{name: "headers", host: "router.internal",
			headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxNamespace: "team-a", HeaderSandboxPort: "65535"}, want: routingKey{Port: 65535}},
		{name: "missing id", host: "router.internal", wantErr: errMissingID},
		{name: "id too long", host: "router.internal", headers: map[string]string{HeaderSandboxID: "a123456789012345678901234567890123456789012345678901234567890123"}, wantErr: errInvalidID},
		{name: "id upper case", host: "router.internal", headers: map[string]string{HeaderSandboxID: "SB1"}, wantErr: errInvalidID},
		{name: "id trailing dash", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1-"}, wantErr: errInvalidID},
		{name: "bad namespace", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxNamespace: "a/b"}, wantErr: errInvalidNS},
		{name: "port zero", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPort: "0"}, wantErr: errInvalidPort},
		{name: "port too big", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPort: "65536"}, wantErr: errInvalidPort},
		{name: "port sign", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPort: "+80"}, wantErr: errInvalidPort},
		{name: "bad uid", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxUID: "not-a-uid"}, wantErr: errInvalidUID},
		{name: "loopback pod ip refused", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "127.0.0.1"}, wantErr: errForbiddenPodIP},
		{name: "link-local pod ip refused", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "169.254.169.254"}, wantErr: errForbiddenPodIP},
		{name: "multicast pod ip refused", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "ff02::1"}, wantErr: errForbiddenPodIP},
		{name: "unspecified pod ip refused", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "0.0.0.0"}, wantErr: errForbiddenPodIP},
		{name: "mapped loopback refused", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "::ffff:127.0.0.1"}, wantErr: errForbiddenPodIP},
		{name: "zoned pod ip refused", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "fe80::1%eth0"}, wantErr: errInvalidPodIP},
		{name: "garbage pod ip", host: "router.internal", headers: map[string]string{HeaderSandboxID: "sb1", HeaderSandboxPodIP: "10.0.0.1:80"}, wantErr: errInvalidPodIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Host = tt.host
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got, err := p.parse(r)
			if err != tt.wantErr {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Name != "sb1" && got.Name != "123-x" {
				t.Errorf("name = %q", got.Name)
			}
			if got.Namespace != "team-a" {
				t.Errorf("namespace = %q", got.Namespace)
			}
			if got.Port != tt.want.Port || got.FromHost != tt.want.FromHost {
				t.Errorf("port/fromHost = %d/%v, want %d/%v", got.Port, got.FromHost, tt.want.Port, tt.want.FromHost)
			}
		})
	}
}

func TestParseRoutingKeyDefaultsAndOptions(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set(HeaderSandboxID, "sb1")
	r.Header.Set(HeaderSandboxUID, "0B3C2E6A-1111-4222-8333-444455556666")
	r.Header.Set(HeaderSandboxPodIP, "127.0.0.2")

	k, err := (&keyParser{allowLoopbackPodIP: true}).parse(r)
	if err != nil {
		t.Fatal(err)
	}
	if k.Namespace != "default" || k.Port != DefaultPort || k.UID == "" || k.PodIP.String() != "127.0.0.2" {
		t.Fatalf("unexpected key %+v", k)
	}
	if _, err := (&keyParser{}).parse(r); err != errForbiddenPodIP {
		t.Fatalf("loopback without flag: %v", err)
	}
	r.Header.Set(HeaderSandboxPodIP, "garbage")
	if k, err := (&keyParser{ignorePodIP: true}).parse(r); err != nil || k.PodIP.IsValid() {
		t.Fatalf("ignored pod ip: %+v %v", k, err)
	}
}

func TestParseRoutingKeyNoAllocOnHit(t *testing.T) {
	p := &keyParser{baseDomains: []string{"example.com"}}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Host = "8080-sb1.team-a.example.com"
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.parse(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("parse allocates %.0f times per call", allocs)
	}
}

func TestParsePathRoute(t *testing.T) {
	p := &keyParser{baseDomains: []string{"example.com"}, pathPrefix: "/sandboxes"}
	for _, tc := range []struct {
		name, host, target string
		wantErr            *keyError
		wantKey            string // ns/name:port, "" for a key not from the path
		wantRest           string
	}{
		{"rest kept as sent", "router", "/sandboxes/team-a/sb1/3000/a%2Fb/c?x=%2F&y", nil, "team-a/sb1:3000", "/a%2Fb/c?x=%2F&y"},
		{"no rest", "router", "/sandboxes/team-a/sb1/8888", nil, "team-a/sb1:8888", "/"},
		{"trailing slash", "router", "/sandboxes/team-a/sb1/8888/", nil, "team-a/sb1:8888", "/"},
		{"query on the bare prefix", "router", "/sandboxes/team-a/sb1/8888?q=1", nil, "team-a/sb1:8888", "/?q=1"},
		{"not the prefix", "router", "/sandboxesx/team-a/sb1/8888", errMissingID, "", ""},
		{"the prefix alone", "router", "/sandboxes", errMissingID, "", ""},
		{"another path", "router", "/lab/sandboxes/a/b/1", errMissingID, "", ""},
		{"host routing wins", "sb2.team-b.example.com", "/sandboxes/team-a/sb1/8888", nil, "", ""},
		{"missing port", "router", "/sandboxes/team-a/sb1", errInvalidPath, "", ""},
		{"missing port, slash", "router", "/sandboxes/team-a/sb1/", errInvalidPath, "", ""},
		{"bad port", "router", "/sandboxes/team-a/sb1/0/x", errInvalidPath, "", ""},
		{"dot segment as namespace", "router", "/sandboxes/../sb1/8888", errInvalidNS, "", ""},
		{"escaped separator in the name", "router", "/sandboxes/team-a/sb%2F1/8888", errInvalidID, "", ""},
		{"upper case", "router", "/sandboxes/Team-a/sb1/8888", errInvalidNS, "", ""},
		{"empty namespace", "router", "/sandboxes//sb1/8888", errInvalidNS, "", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://x"+tc.target, nil)
		r.Host, r.RequestURI = tc.host, tc.target
		k, err := p.parse(r)
		if err != tc.wantErr {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		if err != nil || tc.wantKey == "" {
			if err == nil && k.PathPrefix != "" {
				t.Errorf("%s: path-routed, want not", tc.name)
			}
			continue
		}
		if got := k.Namespace + "/" + k.Name + ":" + strconv.Itoa(int(k.Port)); got != tc.wantKey {
			t.Errorf("%s: key %s, want %s", tc.name, got, tc.wantKey)
		}
		r2 := withoutPathPrefix(r, &k)
		if r2.RequestURI != tc.wantRest || requestTarget(r2) != tc.wantRest {
			t.Errorf("%s: the sandbox gets %q, want %q", tc.name, r2.RequestURI, tc.wantRest)
		}
		if k.sessionPath() != "/sandboxes/"+k.Namespace+"/"+k.Name+"/"+strconv.Itoa(int(k.Port)) {
			t.Errorf("%s: session path %q", tc.name, k.sessionPath())
		}
	}
}

func TestValidPathPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"/sandboxes": true, "/a/b-c_d.e~f": true,
		"": false, "/": false, "sandboxes": false, "/sandboxes/": false, "/a//b": false,
		"/a/../b": false, "/./a": false, "/a%2Fb": false, "/a?b": false, "/a b": false,
	} {
		if got := ValidPathPrefix(p); got != want {
			t.Errorf("ValidPathPrefix(%q) = %v, want %v", p, got, want)
		}
	}
}
