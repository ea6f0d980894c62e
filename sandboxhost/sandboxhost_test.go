package sandboxhost

import (
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestParse(t *testing.T) {
	d := NewDomains([]string{"Example.com.", ".sub.example.com", ""})
	if len(d) != 2 || d[0] != "sub.example.com" {
		t.Fatalf("NewDomains = %q, want longest first, normalised", d)
	}
	for _, tc := range []struct {
		host    string
		want    Address
		matched bool
		err     error
	}{
		{"sb.ns.example.com", Address{"ns", "sb", 0}, true, nil},
		{"3000-sb.ns.example.com:8443", Address{"ns", "sb", 3000}, true, nil},
		{"SB.NS.Example.COM.", Address{"ns", "sb", 0}, true, nil},
		{"sb.ns.sub.example.com", Address{"ns", "sb", 0}, true, nil},
		{"8888-123-abc.ns.example.com", Address{"ns", "123-abc", 8888}, true, nil},
		{"example.com", Address{}, false, nil},
		{"other.org", Address{}, false, nil},
		{"[::1]:80", Address{}, false, nil},
		{"a.b.c.example.com", Address{}, false, ErrShape},
		{"sb.example.com", Address{}, false, ErrShape},
		{"sb.-ns.example.com", Address{}, false, ErrNamespace},
		{"sb_.ns.example.com", Address{}, false, ErrID},
		{"99999-x.ns.example.com", Address{"ns", "99999-x", 0}, true, nil},
	} {
		got, matched, err := d.Parse(tc.host)
		if got != tc.want || matched != tc.matched || err != tc.err {
			t.Errorf("Parse(%q) = %+v, %v, %v; want %+v, %v, %v", tc.host, got, matched, err, tc.want, tc.matched, tc.err)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	d := NewDomains([]string{"example.com"})
	if n := testing.AllocsPerRun(100, func() { _, _, _ = d.Parse("3000-sb.ns.example.com:443") }); n != 0 {
		t.Fatalf("Parse allocates %v times on a canonical host", n)
	}
}

// FuzzParse checks that any host either fails cleanly or yields an address
// made of valid DNS labels: nothing a client writes in a Host header, or an
// xDS client in a resource name, can smuggle characters into a key.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"3000-sb1.ns.example.com", "sb1.ns.example.com:443", "example.com", "[::1]:80",
		"a.b.c.example.com", "0-x.ns.example.com", "99999-x.ns.example.com", "-.-.example.com", "EXAMPLE.COM.", ".example.com"} {
		f.Add(s)
	}
	d := NewDomains([]string{"example.com", "sub.example.com"})
	f.Fuzz(func(t *testing.T, host string) {
		a, matched, err := d.Parse(host)
		if err != nil || !matched {
			if a != (Address{}) {
				t.Fatalf("no match but %+v", a)
			}
			return
		}
		if !resolver.IsDNSLabel(a.Name) || !resolver.IsDNSLabel(a.Namespace) {
			t.Fatalf("host %q gave invalid labels %+v", host, a)
		}
	})
}
