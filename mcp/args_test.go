package mcp

import (
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Every validator of a model's arguments: what it takes and what it
// refuses.

func TestSandboxRefKey(t *testing.T) {
	cases := []struct {
		ns, name string
		ok       bool
	}{
		{"default", "sb1", true},
		{"team-a", "a", true},
		{"a", strings.Repeat("x", 63), true},
		{"", "sb1", false},
		{"default", "", false},
		{"Default", "sb1", false},
		{"default", "sb_1", false},
		{"default", "-sb", false},
		{"default", "sb-", false},
		{"default", "sb.1", false},
		{"default", strings.Repeat("x", 64), false},
		{"default", "../etc", false},
		{"default", "sb1\x00", false},
		{"kube-system/x", "sb1", false},
		{"default", "ｓｂ", false}, // full-width letters
	}
	for _, c := range cases {
		k, err := (&sandboxRef{c.ns, c.name}).key()
		if (err == nil) != c.ok {
			t.Errorf("key(%q, %q): err %v, want ok=%v", c.ns, c.name, err, c.ok)
			continue
		}
		if c.ok && (k != resolver.Key{Namespace: c.ns, Name: c.name}) {
			t.Errorf("key(%q, %q) = %+v", c.ns, c.name, k)
		}
	}
}

func TestRuntimePath(t *testing.T) {
	cases := []struct {
		in, want string // want "" means refused
	}{
		{"/app/main.py", "%2Fapp%2Fmain.py"},
		{"main.py", "main.py"},
		{"/", "%2F"},
		{".", "%2E"}, // not a lone dot segment, which a proxy would normalise away
		{"./a", ".%2Fa"},
		{"...", "..."},
		{"a..b", "a..b"},
		{"/tmp/a b", "%2Ftmp%2Fa%20b"},
		{"/tmp/a?b#c", "%2Ftmp%2Fa%3Fb%23c"},
		{"/tmp/%2e%2e/x", "%2Ftmp%2F%252e%252e%2Fx"}, // a literal name, not a ".."
		{"/tmp/100%", "%2Ftmp%2F100%25"},
		{"/tmp/é", "%2Ftmp%2F%C3%A9"},
		{"/tmp/a;b,c", "%2Ftmp%2Fa%3Bb%2Cc"},
		{"/" + strings.Repeat("a", maxPathBytes-1), "%2F" + strings.Repeat("a", maxPathBytes-1)},

		{"", ""},
		{"..", ""},
		{"../etc/passwd", ""},
		{"/app/../../etc/passwd", ""},
		{"/app/..", ""},
		{"a/../b", ""},
		{"/tmp/a\x00b", ""},
		{"/tmp/a\nb", ""},
		{"/tmp/a\rb", ""},
		{"/tmp/a\tb", ""},
		{"/tmp/a\x7fb", ""},
		{"/tmp/a\u0085b", ""}, // C1 NEL
		{"/tmp/a\u009bb", ""}, // C1 CSI
		{"..\\..\\windows", ""},
		{"/tmp/a\\b", ""},
		{"/tmp/\xff", ""},
		{"/tmp/\xc3", ""},
		{"/" + strings.Repeat("a", maxPathBytes), ""},
	}
	for _, c := range cases {
		got, err := runtimePath(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("runtimePath(%q) = %q, want refused", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("runtimePath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// TestRuntimePathErrorsClipped: a refused path is quoted back clipped,
// so an error never repeats a 4 KiB argument.
func TestRuntimePathErrorsClipped(t *testing.T) {
	_, err := runtimePath(strings.Repeat("é", 100) + "/../x")
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckCommand(t *testing.T) {
	cases := []struct {
		cmd string
		ok  bool
	}{
		{"ls -la", true},
		{"python3 -c 'print(1)'", true},
		{"echo é", true},
		{strings.Repeat("a", maxCommandBytes), true},
		{"", false},
		{"   \t\n", false},
		{strings.Repeat("a", maxCommandBytes+1), false},
		{"echo \xff", false},
		{"echo a\x00b", false},
	}
	for _, c := range cases {
		if err := checkCommand(c.cmd); (err == nil) != c.ok {
			t.Errorf("checkCommand(%.20q): %v, want ok=%v", c.cmd, err, c.ok)
		}
	}
}

func TestCheckTemplate(t *testing.T) {
	cases := []struct {
		tpl string
		ok  bool
	}{
		{"python", true},
		{"python-3.12", true},
		{"a.b.c", true},
		{strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61), true}, // 253
		{"", false},
		{"Python", false},
		{"a..b", false},
		{".a", false},
		{"a.", false},
		{"a/b", false},
		{"../x", false},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 127) + "a", false}, // 255 bytes
	}
	for _, c := range cases {
		if err := checkTemplate(c.tpl); (err == nil) != c.ok {
			t.Errorf("checkTemplate(%.30q): %v, want ok=%v", c.tpl, err, c.ok)
		}
	}
}

func TestCheckSelector(t *testing.T) {
	cases := []struct {
		sel string
		ok  bool
	}{
		{"app=web", true},
		{"app=web,tier!=db", true},
		{"env in (dev,prod),!legacy", true},
		{"app", true},
		{"app=" + strings.Repeat("a", 63), true},
		{"app=!=", false},
		{"app=(", false},
		{"app=web,", false},
		{"=web", false},
		{"app=" + strings.Repeat("a", 64), false},    // a label value is at most 63
		{strings.Repeat("a=b,", 256) + "a=b", false}, // over 1024 bytes
		{"app=we b", false},
	}
	for _, c := range cases {
		if err := checkSelector(c.sel); (err == nil) != c.ok {
			t.Errorf("checkSelector(%.30q): %v, want ok=%v", c.sel, err, c.ok)
		}
	}
}

func TestCheckPort(t *testing.T) {
	cases := []struct {
		in   int
		want uint16
		ok   bool
	}{
		{0, 8888, true},
		{1, 1, true},
		{3000, 3000, true},
		{65535, 65535, true},
		{-1, 0, false},
		{65536, 0, false},
		{1 << 40, 0, false},
		{-(1 << 40), 0, false},
	}
	for _, c := range cases {
		got, err := checkPort(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("checkPort(%d) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestSeconds(t *testing.T) {
	const def, max = time.Minute, 10 * time.Minute
	cases := []struct {
		in   int
		want time.Duration
		ok   bool
	}{
		{0, def, true},
		{1, time.Second, true},
		{600, max, true},
		{601, 0, false},
		{-1, 0, false},
		{1 << 62, 0, false}, // overflows time.Duration: must not wrap into range
		{(1<<63-1)/int(time.Second) + 1, 0, false}, // wraps negative
		{1<<55 + 1, 0, false},                      // wraps to exactly 1s
		{-(1 << 62), 0, false},
	}
	for _, c := range cases {
		got, err := seconds("timeout_seconds", c.in, def, max)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("seconds(%d) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// TestSecondsNeverWraps: no int, however large, multiplies into an
// accepted duration.
func TestSecondsNeverWraps(t *testing.T) {
	for _, v := range []int{1<<63 - 1, 1 << 34, 1<<34 + 1, 9223372037, 9223372036854775807 / 1000, -9223372036854775808} {
		if d, err := seconds("x", v, time.Second, 10*time.Minute); err == nil {
			t.Errorf("seconds(%d) = %v, accepted", v, d)
		}
	}
}

func TestSize(t *testing.T) {
	cases := []struct {
		in, want int
		ok       bool
	}{
		{0, 64 << 10, true},
		{1, 1, true},
		{1 << 20, 1 << 20, true},
		{1<<20 + 1, 0, false},
		{-1, 0, false},
		{-(1 << 62), 0, false},
	}
	for _, c := range cases {
		got, err := size("max_output_bytes", c.in, 64<<10, 1<<20)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("size(%d) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestClip(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("a", 80), strings.Repeat("a", 80)},
		{strings.Repeat("a", 81), strings.Repeat("a", 80) + "..."},
		{strings.Repeat("a", 79) + "éé", strings.Repeat("a", 79) + "..."}, // never half a rune
	}
	for _, c := range cases {
		if got := clip(c.in); got != c.want {
			t.Errorf("clip(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDecodeArgs(t *testing.T) {
	cases := []struct {
		raw string
		ok  bool
	}{
		{``, true},
		{`   `, true},
		{`{}`, true},
		{`null`, true},
		{`{"namespace":"default","path":"/a","offset":5,"length":10}`, true},
		{` {"namespace":"default"} `, true},
		{`{"namespace":"default","unknown":1}`, false},
		{`{"namespace":"default"}{}`, false},
		{`{"namespace":"default"} x`, false},
		{`[]`, false},
		{`[{"namespace":"default"}]`, false},
		{`"default"`, false},
		{`1`, false},
		{`{"offset":1e400}`, false},
		{`{"offset":1.5}`, false},
		{`{"offset":"5"}`, false},
		{`{"offset":99999999999999999999}`, false},
		{`{"namespace":1}`, false},
		{`{"namespace":`, false},
		{`{`, false},
	}
	for _, c := range cases {
		var a readArgs
		if err := decodeArgs([]byte(c.raw), &a); (err == nil) != c.ok {
			t.Errorf("decodeArgs(%s): %v, want ok=%v", c.raw, err, c.ok)
		}
	}
}

func TestSandboxURI(t *testing.T) {
	k := resolver.Key{Namespace: "team-a", Name: "sb1"}
	if got := sandboxURI(k); got != "sandbox://team-a/sb1" {
		t.Fatalf("sandboxURI = %q", got)
	}
	for _, bad := range []string{"", "sandbox://", "sandbox://team-a", "sandbox://team-a/", "sandbox:///sb1",
		"sandbox://team-a/sb1/files", "sandbox://Team-a/sb1", "http://team-a/sb1", "sandbox://team-a/sb1?x", "SANDBOX://team-a/sb1"} {
		if k, ok := parseSandboxURI(bad); ok {
			t.Errorf("parseSandboxURI(%q) = %+v, want refused", bad, k)
		}
	}
	if got, ok := parseSandboxURI("sandbox://team-a/sb1"); !ok || got != k {
		t.Errorf("parseSandboxURI = %+v, %v", got, ok)
	}
	if got := fileURI(k, "/app/a b"); got != "sandbox://team-a/sb1/files/%2Fapp%2Fa%20b" {
		t.Errorf("fileURI = %q", got)
	}
}
