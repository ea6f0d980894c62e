package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Fuzz targets for every parser of what a model (or a client) sends.
// Each checks the parser against rules written here independently of it.

// checkSandboxPath is the rule a path must pass to reach a sandbox's
// runtime: non-empty, at most 4096 bytes, valid UTF-8, no control
// character (C0, DEL, C1), no backslash, no ".." segment.
func checkSandboxPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty")
	case len(p) > 4096:
		return errors.New("longer than 4096 bytes")
	case !utf8.ValidString(p):
		return errors.New("invalid UTF-8")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return fmt.Errorf("control character %U", r)
		}
		if r == '\\' {
			return errors.New("backslash")
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return errors.New(`".." segment`)
		}
	}
	return nil
}

// checkEscapedSegment checks what runtimePath returned for p: one path
// segment, that decodes back to p.
func checkEscapedSegment(p, seg string) error {
	if seg == "" {
		return errors.New("empty segment")
	}
	if strings.ContainsAny(seg, "/?#\\ ") {
		return fmt.Errorf("segment %q holds an unescaped '/', '?', '#', '\\' or space", seg)
	}
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; c < 0x21 || c >= 0x7f {
			return fmt.Errorf("segment %q holds the raw byte %#x", seg, c)
		}
	}
	back, err := url.PathUnescape(seg)
	if err != nil || back != p {
		return fmt.Errorf("segment %q unescapes to %q, %v", seg, back, err)
	}
	// As the runtime's URL, byte for byte.
	u, err := url.Parse("http://sandbox/download/" + seg)
	if err != nil || u.Path != "/download/"+p || u.EscapedPath() != "/download/"+seg || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("as a URL %q: %v", seg, err)
	}
	return nil
}

func FuzzRuntimePath(f *testing.F) {
	for _, s := range []string{
		"/app/main.py", "main.py", "/", ".", "./a", "...", "a..b", "/tmp/a b", "/tmp/a?b#c", "é/ü/ß", "/😀",
		"../../etc/passwd", "/app/../../etc/passwd", "..", "a/..", "%2e%2e", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc",
		"%2F", "%00", "a\x00b", "\x00", "a\nb", "a\rb", "\x7f", "\u0085", "\u009f", "\u00a0", "\u2028", "\ufeff",
		"..\\..\\windows", "a\\b", "\xff", "\xc3", "\xed\xa0\x80", "//", "a//b", "/..;/", "..;", ";", "%", "%%", "%zz",
		strings.Repeat("é", 20), strings.Repeat("../", 10), // (the length bounds are TestRuntimePath's: long seeds slow minimization)
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		seg, err := runtimePath(p)
		want := checkSandboxPath(p)
		if err != nil {
			if want == nil {
				t.Errorf("runtimePath(%q) refused a good path: %v", p, err)
			}
			if len(err.Error()) > 1024 { // clip keeps 80 bytes, %q may make each 10
				t.Errorf("runtimePath(%.40q): an error of %d bytes", p, len(err.Error()))
			}
			return
		}
		if want != nil {
			t.Fatalf("runtimePath(%q) = %q, accepted a path with %v", p, seg, want)
		}
		if err := checkEscapedSegment(p, seg); err != nil {
			t.Fatalf("runtimePath(%q): %v", p, err)
		}
	})
}

func FuzzSandboxURI(f *testing.F) {
	for _, s := range [][3]string{
		{"sandbox://team-a/sb1", "team-a", "sb1"},
		{"sandbox://a/b/c", "a", "b"},
		{"sandbox:///sb1", "", "sb1"},
		{"sandbox://team-a/", "team-a", ""},
		{"sandbox://Team-A/sb1", "Team-A", "sb1"},
		{"sandbox://team-a/sb1?x=1#y", "team-a", "sb1/x"},
		{"sandbox://team-a/../sb1", "..", "sb1"},
		{"sandbox://team-a/%73b1", "team-a", "s b"},
		{"sandbox://x/" + strings.Repeat("a", 64), "x", strings.Repeat("a", 63)},
		{"file:///etc/passwd", "-a", "a-"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, uri, ns, name string) {
		if k, ok := parseSandboxURI(uri); ok {
			if !resolver.IsDNSLabel(k.Namespace) || !resolver.IsDNSLabel(k.Name) || k.UID != "" {
				t.Fatalf("parseSandboxURI(%q) = %+v", uri, k)
			}
			if back := sandboxURI(k); back != uri {
				t.Fatalf("parseSandboxURI(%q) = %+v, which is %q", uri, k, back)
			}
		}
		k := resolver.Key{Namespace: ns, Name: name}
		got, ok := parseSandboxURI(sandboxURI(k))
		valid := resolver.IsDNSLabel(ns) && resolver.IsDNSLabel(name)
		if ok != valid || (ok && got != k) {
			t.Fatalf("parseSandboxURI(sandboxURI(%+v)) = %+v, %v", k, got, ok)
		}
	})
}

// checkDecode decodes raw into a fresh T with decodeArgs and checks it
// against encoding/json's own reading.
func checkDecode[T any](t *testing.T, raw []byte) {
	var v T
	err := decodeArgs(raw, &v)
	trimmed := bytes.Trim(raw, " \t\r\n") // JSON's whitespace
	// What decodeArgs should do: one JSON object (or null, or nothing),
	// with only the fields of T (encoding/json matches their names
	// without regard to case), each of its type.
	fields := make(map[string]bool)
	rt := reflect.TypeFor[T]()
	for _, f := range reflect.VisibleFields(rt) { // an embedded sandboxRef's fields are the tool's
		if f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		fields[strings.ToLower(name)] = true
	}
	var obj map[string]json.RawMessage
	// (Any Unicode space alone reads as no arguments.)
	wantOK := len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(trimmed, []byte("null"))
	if !wantOK && json.Valid(trimmed) && json.Unmarshal(trimmed, &obj) == nil && obj != nil {
		wantOK = true
		for key := range obj {
			if !fields[strings.ToLower(key)] {
				wantOK = false
			}
		}
		var loose T
		if json.Unmarshal(trimmed, &loose) != nil {
			wantOK = false
		}
	}
	if (err == nil) != wantOK {
		t.Fatalf("decodeArgs[%s](%q): %v, want ok=%v", rt.Name(), raw, err, wantOK)
	}
	if err != nil {
		return
	}
	// What was decoded survives a round trip.
	again, _ := json.Marshal(v)
	var w T
	if err := decodeArgs(again, &w); err != nil || !reflect.DeepEqual(v, w) {
		t.Fatalf("decodeArgs[%s](%q) = %+v, which reads back as %+v, %v", rt.Name(), raw, v, w, err)
	}
}

func FuzzDecodeArgs(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{}`, `null`, `[]`, `[{}]`, `"x"`, `1`, `true`, `{"namespace":"default","name":"sb1"}`,
		`{"namespace":"default","name":"sb1","command":"ls","timeout_seconds":30,"max_output_bytes":1000}`,
		`{"namespace":"default","name":"sb1","path":"/a","offset":-1,"length":99999999999999999999}`,
		`{"offset":1e400}`, `{"offset":1.5}`, `{"offset":"5"}`, `{"NAMESPACE":"x"}`, `{"namespace":"a","namespace":"b"}`,
		`{"namespace":"default","unknown":1}`, `{"namespace":null}`, `{} {}`, `{}x`, `{"path":"\u0000"}`, `{"path":"\ud800"}`,
		"{\"path\":\"\xff\"}", `{"content":"` + strings.Repeat("A", 100) + `"}`, `{"port":65536}`, `{"ttl_seconds":-9223372036854775808}`,
		`{"wait_seconds":9223372036854775808}`, `{"template":"a.b","name":""}`, `{"label_selector":"a in (b,c)"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkDecode[sandboxRef](t, raw)
		checkDecode[listArgs](t, raw)
		checkDecode[executeArgs](t, raw)
		checkDecode[fileArgs](t, raw)
		checkDecode[readArgs](t, raw)
		checkDecode[writeArgs](t, raw)
		checkDecode[resumeArgs](t, raw)
		checkDecode[createArgs](t, raw)
		checkDecode[previewArgs](t, raw)
	})
}

// checkRuntimeRequest checks a request that reached the data plane, that
// is, one that would reach a sandbox.
func checkRuntimeRequest(t *testing.T, limits Limits, token string, r seenRequest) {
	t.Helper()
	h := r.Header
	if ns, id := h.Get("X-Sandbox-Namespace"), h.Get("X-Sandbox-ID"); !resolver.IsDNSLabel(ns) || !resolver.IsDNSLabel(id) ||
		len(h.Values("X-Sandbox-Namespace")) != 1 || len(h.Values("X-Sandbox-ID")) != 1 {
		t.Fatalf("sandbox %q/%q", h.Values("X-Sandbox-Namespace"), h.Values("X-Sandbox-ID"))
	}
	if h.Get("X-Sandbox-Port") != "8888" || len(h.Values("X-Sandbox-Port")) != 1 {
		t.Fatalf("port %q", h.Values("X-Sandbox-Port"))
	}
	for _, k := range []string{"X-Sandbox-Pod-IP", "X-Sandbox-UID", "Cookie", "X-Forwarded-For"} {
		if _, ok := h[k]; ok {
			t.Fatalf("the request carries %s", k)
		}
	}
	if s, err := strconv.Atoi(h.Get("X-Sandbox-Timeout")); err != nil || s < 1 || s > int(limits.MaxCommandTimeout/time.Second) {
		t.Fatalf("X-Sandbox-Timeout %q", h.Get("X-Sandbox-Timeout"))
	}
	if h.Get("Authorization") != "Bearer "+token || r.Host != internalHost {
		t.Fatalf("Authorization %q, Host %q", h.Get("Authorization"), r.Host)
	}
	switch op, seg, _ := strings.Cut(strings.TrimPrefix(r.RequestURI, "/"), "/"); op {
	case "execute":
		var body map[string]any
		if r.Method != "POST" || seg != "" || json.Unmarshal(r.Body, &body) != nil || len(body) != 1 {
			t.Fatalf("%s %s %q", r.Method, r.RequestURI, r.Body)
		}
		cmd, ok := body["command"].(string)
		if !ok || strings.TrimSpace(cmd) == "" || len(cmd) > maxCommandBytes || strings.ContainsRune(cmd, 0) || !utf8.ValidString(cmd) {
			t.Fatalf("command %.80q (%d bytes)", cmd, len(cmd))
		}
	case "upload":
		if r.Method != "POST" || seg != "" {
			t.Fatalf("%s %s", r.Method, r.RequestURI)
		}
		name, content := uploadedFile(t, r)
		if err := checkSandboxPath(name); err != nil {
			t.Fatalf("upload as %q: %v", name, err)
		}
		if len(content) > limits.FileBytes {
			t.Fatalf("upload of %d bytes", len(content))
		}
	case "download", "list", "exists":
		if r.Method != "GET" || len(r.Body) != 0 {
			t.Fatalf("%s %s with %d bytes", r.Method, r.RequestURI, len(r.Body))
		}
		p, err := url.PathUnescape(seg)
		if err != nil {
			t.Fatalf("%s: %v", r.RequestURI, err)
		}
		if err := checkSandboxPath(p); err != nil {
			t.Fatalf("%s: the path %q: %v", r.RequestURI, p, err)
		}
		if err := checkEscapedSegment(p, seg); err != nil {
			t.Fatalf("%s: %v", r.RequestURI, err)
		}
		if r.Path != "/"+op+"/"+p {
			t.Fatalf("%s is %q decoded", r.RequestURI, r.Path)
		}
	default:
		t.Fatalf("%s %s reached the sandbox", r.Method, r.RequestURI)
	}
}

// uploadedFile is the one file of an /upload body, with its whole name.
func uploadedFile(t *testing.T, r seenRequest) (string, []byte) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	part, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	_, dp, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil || dp["name"] != "file" {
		t.Fatalf("Content-Disposition %q: %v", part.Header.Get("Content-Disposition"), err)
	}
	data, err := io.ReadAll(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("more than one part: %v", err)
	}
	return dp["filename"], data
}

// checkTemplateName is a SandboxTemplate's name: a DNS subdomain.
func checkTemplateName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if !resolver.IsDNSLabel(part) {
			return false
		}
	}
	return true
}

func checkClusterCall(t *testing.T, token string, c clusterCall) {
	t.Helper()
	if c.token != token || !resolver.IsDNSLabel(c.namespace) {
		t.Fatalf("cluster call %+v", c)
	}
	switch c.op {
	case "suspend", "delete":
		if !resolver.IsDNSLabel(c.name) {
			t.Fatalf("cluster call %+v", c)
		}
	case "create":
		if !resolver.IsDNSLabel(c.name) || !checkTemplateName(c.template) {
			t.Fatalf("cluster call %+v", c)
		}
	case "list":
		if _, err := labels.Parse(c.selector); err != nil || c.selector == "" || len(c.selector) > 1024 || c.name != "" || c.limit != maxListed+1 {
			t.Fatalf("cluster call %+v: %v", c, err)
		}
	default:
		t.Fatalf("cluster call %+v", c)
	}
}

// toolSeeds are realistic and hostile arguments of each tool.
var toolSeeds = map[string][]string{
	"list_sandboxes": {`{"namespace":"team-a","label_selector":"app=web,tier!=db"}`, `{}`, `{"namespace":"team-a","state":"running"}`,
		`{"namespace":"team-a","label_selector":"` + strings.Repeat("a=b,", 256) + `a=b"}`, `{"state":"unknown"}`, `{"namespace":"../x"}`, `[]`},
	"get_sandbox":     {`{"namespace":"team-a","name":"sb1"}`, `{"namespace":"team-a","name":"../sb1"}`, `{"namespace":"TEAM","name":"sb1"}`, `{"name":"sb1"}`},
	"resume_sandbox":  {`{"namespace":"team-a","name":"sb1","wait_seconds":1}`, `{"namespace":"team-a","name":"sb1","wait_seconds":-5}`, `{"namespace":"team-a","name":"sb1","wait_seconds":1e10}`},
	"suspend_sandbox": {`{"namespace":"team-a","name":"sb1"}`, `{"namespace":"team-a","name":"sb1\u0000"}`},
	"execute_command": {`{"namespace":"team-a","name":"sb1","command":"ls -la /"}`, `{"namespace":"team-a","name":"sb1","command":"cat ../../etc/passwd","timeout_seconds":600,"max_output_bytes":1048576}`,
		`{"namespace":"team-a","name":"sb1","command":"a\u0000b"}`,
		`{"namespace":"team-a","name":"sb1","command":"ls","timeout_seconds":-1}`, `{"namespace":"team-a","name":"sb1","command":"ls","timeout_seconds":36028797018963969}`},
	"read_file": {`{"namespace":"team-a","name":"sb1","path":"/app/main.py"}`, `{"namespace":"team-a","name":"sb1","path":"../../etc/passwd"}`,
		`{"namespace":"team-a","name":"sb1","path":"%2e%2e/%2e%2e/etc/passwd"}`, `{"namespace":"team-a","name":"sb1","path":"/a\u0000b"}`,
		`{"namespace":"team-a","name":"sb1","path":"/app/main.py","offset":-1}`, `{"namespace":"team-a","name":"sb1","path":"/app/main.py","offset":3,"length":2}`,
		`{"namespace":"team-a","name":"sb1","path":"/app/main.py","offset":99999999999}`, `{"namespace":"team-a","name":"sb1","path":"/x?y#z"}`},
	"write_file": {`{"namespace":"team-a","name":"sb1","path":"/app/a.txt","content":"hi"}`, `{"namespace":"team-a","name":"sb1","path":"/app/a\"b.txt","content":"hi"}`,
		`{"namespace":"team-a","name":"sb1","path":"/app/b","content":"AAEC/w==","encoding":"base64"}`, `{"namespace":"team-a","name":"sb1","path":"..\\x","content":"hi"}`,
		`{"namespace":"team-a","name":"sb1","path":"/a","content":"` + strings.Repeat("x", 65) + `"}`, `{"namespace":"team-a","name":"sb1","path":"/a;name=x","content":""}`},
	"list_files":     {`{"namespace":"team-a","name":"sb1","path":"/"}`, `{"namespace":"team-a","name":"sb1","path":"."}`, `{"namespace":"team-a","name":"sb1","path":".."}`},
	"file_exists":    {`{"namespace":"team-a","name":"sb1","path":"/app/main.py"}`, `{"namespace":"team-a","name":"sb1","path":"/\u0085"}`},
	"preview_url":    {`{"namespace":"team-a","name":"sb1","port":3000,"ttl_seconds":600}`, `{"namespace":"team-a","name":"sb1","port":70000}`, `{"namespace":"team-a","name":"sb1","ttl_seconds":-1}`},
	"create_sandbox": {`{"namespace":"team-a","template":"python"}`, `{"namespace":"team-a","template":"python.v3","name":"x1","wait_seconds":1}`, `{"namespace":"team-a","template":"../python"}`},
	"delete_sandbox": {`{"namespace":"team-a","name":"sb1"}`, `{"namespace":"kube-system","name":"coredns"}`},
}

// toolFuzz is the Handler FuzzToolArgs calls the tools of: every valid
// name is a running sandbox, reached by a Kubernetes identity that may
// reach everything, and by a scoped token for team-a/sb1.
type toolFuzz struct {
	e                *env
	kube, scoped     *caller
	kubeTok, scopTok string
	index            map[string]uint8
}

func newToolFuzz(tb testing.TB) *toolFuzz {
	z := &toolFuzz{e: newEnv(tb, Limits{FileBytes: 64}), kubeTok: "tok-root", index: make(map[string]uint8)} // a small FileBytes, for the bound to be reached
	z.e.sb.anyName = true
	z.e.auth.user("tok-root", "root", "*")
	z.kube = z.e.caller(tb, z.kubeTok)
	z.scopTok = scopedToken(tb, z.e.priv, resolver.Key{Namespace: "team-a", Name: "sb1"}, "uid-team-a-sb1")
	z.scoped = z.e.caller(tb, z.scopTok)
	for i, t := range z.e.h.tools {
		z.index[t.def.Name] = uint8(i)
	}
	return z
}

// run calls a tool with raw arguments, and checks everything that
// reached a sandbox, the cluster or the minter. status, when not 0, is
// what the sandbox answers every request with, and answer the body: a
// sandbox's runtime is the tenant's code.
func (z *toolFuzz) run(t *testing.T, which uint8, asScoped bool, raw []byte, status uint16, answer []byte) (tl tool, reached int) {
	e := z.e
	e.runtime.answer = nil
	if status != 0 {
		code := 200 + int(status)%400 // 200-599
		e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			w.Write(answer)
		}
	}
	tl = e.h.tools[int(which)%len(e.h.tools)]
	c, token := z.kube, z.kubeTok
	if asScoped {
		c, token = z.scoped, z.scopTok
	}
	e.runtime.reset()
	e.cluster.reset()
	e.previews.mu.Lock()
	e.previews.reqs = nil
	e.previews.mu.Unlock()
	e.sb.mu.Lock()
	clear(e.sb.byName) // what the last input created
	e.sb.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := tl.run(ctx, c, raw)
	if (err == nil) == (res == nil) {
		t.Fatalf("%s(%q): result %v and error %v", tl.def.Name, raw, res, err)
	}
	for _, r := range e.runtime.requests() {
		checkRuntimeRequest(t, e.h.limits, token, r)
		reached++
	}
	for _, cc := range e.cluster.recorded() {
		checkClusterCall(t, token, cc)
		reached++
	}
	for _, mr := range e.previews.recorded() {
		ttl, terr := strconv.Atoi(strings.TrimSuffix(mr.TTL, "s"))
		if !resolver.IsDNSLabel(mr.Namespace) || !resolver.IsDNSLabel(mr.Name) || len(mr.Ports) != 1 || mr.Ports[0] == 0 ||
			(mr.TTL != "" && (terr != nil || !strings.HasSuffix(mr.TTL, "s") || ttl < 1 || ttl > 86400)) {
			t.Fatalf("mint request %+v", mr)
		}
		reached++
	}
	return tl, reached
}

func FuzzToolArgs(f *testing.F) {
	z := newToolFuzz(f)
	for name, seeds := range toolSeeds {
		for _, s := range seeds {
			f.Add(z.index[name], false, []byte(s), uint16(0), []byte(nil))
			f.Add(z.index[name], true, []byte(s), uint16(0), []byte(nil))
		}
	}
	for _, a := range []struct {
		status uint16
		body   string
	}{
		{0, `{"stdout":"` + strings.Repeat("é", 40) + `","stderr":"\u0000","exit_code":-1}`}, // 200
		{3, `{"detail":"this identity may not reach this sandbox","code":"sandbox_forbidden"}`},
		{204, `{"detail":"no sandbox","code":"sandbox_not_found"}`},
		{300, `{"message":"disk full"}`},
		{4, "\x89PNG\r\n\x1a\n\x00\x00"},
		{100, `[{"name":"a"},{"name":"b"}]`},
		{6, `{"exists":"yes"}`},
	} {
		for _, name := range []string{"execute_command", "read_file", "write_file", "list_files", "file_exists"} {
			f.Add(z.index[name], false, []byte(toolSeeds[name][0]), a.status+400, []byte(a.body))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, asScoped bool, raw []byte, status uint16, answer []byte) {
		z.run(t, which, asScoped, raw, status, answer)
	})
}

// TestToolFuzzReaches: the realistic seed of every tool but the reading
// ones gets through to a sandbox, the cluster or the minter, so that
// FuzzToolArgs checks what reaches them, not only refusals.
func TestToolFuzzReaches(t *testing.T) {
	z := newToolFuzz(t)
	for name, seeds := range toolSeeds {
		_, reached := z.run(t, z.index[name], false, []byte(seeds[0]), 0, nil)
		if want := name != "get_sandbox"; (reached > 0) != want {
			t.Errorf("%s %s: %d calls reached a sandbox, the cluster or the minter", name, seeds[0], reached)
		}
	}
	if _, reached := z.run(t, z.index["execute_command"], true, []byte(toolSeeds["execute_command"][0]), 0, nil); reached != 1 {
		t.Errorf("the scoped token's call reached %d", reached)
	}
}
