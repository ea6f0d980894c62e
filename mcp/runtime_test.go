package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// The runtime tools (runtime.go) over a fake data plane.

var sb1 = resolver.Key{Namespace: "team-a", Name: "sb1"}

// runtimeEnv is an env where alice reaches team-a/sb1, a running
// sandbox.
func runtimeEnv(t *testing.T, limits Limits) (*env, *caller) {
	t.Helper()
	e := newEnv(t, limits, running("team-a", "sb1"))
	e.auth.user("tok-alice", "alice", "team-a/sb1")
	return e, e.caller(t, "tok-alice")
}

func TestCut(t *testing.T) {
	cases := []struct {
		s       string
		limit   int
		kept    string
		dropped int // 0: not cut
	}{
		{"", 10, "", 0},
		{"hello", 5, "hello", 0},
		{"hello", 10, "hello", 0},
		{"hello world", 5, "hello", 6},
		{"aé", 2, "a", 2},              // é is 2 bytes: not split
		{"a€b", 3, "a", 4},             // € is 3 bytes
		{"a€b", 4, "a€", 1},            // on a boundary
		{"😀😀", 5, "😀", 4},              // 4-byte runes
		{"\xff\xfe\xfd", 1, "\xff", 2}, // invalid UTF-8 is cut by bytes, not looped on
	}
	for _, c := range cases {
		got := cut(c.s, c.limit, "stdout")
		if c.dropped == 0 {
			if got != c.s {
				t.Errorf("cut(%q, %d) = %q, want unchanged", c.s, c.limit, got)
			}
			continue
		}
		marker := fmt.Sprintf("\n[sandbox-router: %d more bytes of stdout cut;", c.dropped)
		if !strings.HasPrefix(got, c.kept+marker) || !strings.Contains(got, "max_output_bytes") || !strings.Contains(got, "read_file") {
			t.Errorf("cut(%q, %d) = %q, want %q + marker", c.s, c.limit, got, c.kept)
		}
		if utf8.ValidString(c.s) && !utf8.ValidString(got) {
			t.Errorf("cut(%q, %d) split a rune: %q", c.s, c.limit, got)
		}
	}
}

func TestExecuteCommand(t *testing.T) {
	e, c := runtimeEnv(t, Limits{OutputBytes: 8, MaxOutputBytes: 64})
	long := strings.Repeat("x", 20)
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"stdout": long, "stderr": "warn", "exit_code": 3})
	}
	res, err := e.call(context.Background(), c, "execute_command", `{"namespace":"team-a","name":"sb1","command":"python3 -c 'print(1)'","timeout_seconds":30}`)
	if err != nil {
		t.Fatal(err)
	}
	var out executeResult
	if err := json.Unmarshal([]byte(text(res)), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.Stdout, "xxxxxxxx\n[sandbox-router: 12 more bytes of stdout cut") || out.Stderr != "warn" || out.ExitCode != 3 {
		t.Errorf("result %+v", out)
	}
	reqs := e.runtime.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	var body map[string]string
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body) != 1 || body["command"] != "python3 -c 'print(1)'" {
		t.Errorf("body %s", r.Body)
	}
	if r.Method != "POST" || r.RequestURI != "/execute" || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get("X-Sandbox-Timeout") != "30" || r.Header.Get("Authorization") != "Bearer tok-alice" {
		t.Errorf("request %s %s %v", r.Method, r.RequestURI, r.Header)
	}

	// A larger max_output_bytes, up to the limit.
	res, _ = e.call(context.Background(), c, "execute_command", `{"namespace":"team-a","name":"sb1","command":"ls","max_output_bytes":64}`)
	if json.Unmarshal([]byte(text(res)), &out); out.Stdout != long {
		t.Errorf("stdout %q", out.Stdout)
	}
	for _, args := range []string{
		`{"namespace":"team-a","name":"sb1","command":"ls","max_output_bytes":65}`,
		`{"namespace":"team-a","name":"sb1","command":"ls","timeout_seconds":601}`,
		`{"namespace":"team-a","name":"sb1","command":""}`,
		`{"namespace":"team-a","name":"sb1","command":"ls","shell":true}`,
	} {
		if res, err := e.call(context.Background(), c, "execute_command", args); err == nil {
			t.Errorf("%s: %s", args, text(res))
		}
	}

	// An answer that is not {stdout, stderr, exit_code}.
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }
	if _, err := e.call(context.Background(), c, "execute_command", `{"namespace":"team-a","name":"sb1","command":"ls"}`); err == nil ||
		!strings.Contains(err.Error(), "{stdout, stderr, exit_code}") {
		t.Errorf("err = %v", err)
	}
}

// TestExecuteDeadline: a command that outlives timeout_seconds is an
// error that says so.
func TestExecuteDeadline(t *testing.T) {
	e, c := runtimeEnv(t, Limits{})
	e.runtime.hold = make(chan struct{}) // never released: the call's deadline ends it
	_, err := e.call(context.Background(), c, "execute_command", `{"namespace":"team-a","name":"sb1","command":"sleep 5","timeout_seconds":1}`)
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("err = %v", err)
	}
}

func readPage(t *testing.T, e *env, c *caller, args string) (*sdk.CallToolResult, error) {
	t.Helper()
	return e.call(context.Background(), c, "read_file", `{"namespace":"team-a","name":"sb1","path":"/f"`+args+`}`)
}

func TestReadFileText(t *testing.T) {
	e, c := runtimeEnv(t, Limits{OutputBytes: 30, MaxOutputBytes: 1000})
	content := strings.Repeat("0123456789", 10) // 100 bytes
	e.runtime.files["/f"] = []byte(content)
	cases := []struct {
		args, want, marker string
	}{
		{``, content[:30], "[sandbox-router: more bytes follow; call read_file with offset=30 for the next page]"},
		{`,"offset":30,"length":50`, content[30:80], "call read_file with offset=80 "},
		{`,"offset":90`, content[90:], ""},
		{`,"offset":70,"length":30`, content[70:], ""}, // exactly the rest: no next page
		{`,"offset":100`, "", ""},                      // at the end: empty
	}
	for _, tc := range cases {
		res, err := readPage(t, e, c, tc.args)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		got := text(res)
		page, marker, _ := strings.Cut(got, "\n")
		if page != tc.want || (tc.marker == "") != (marker == "") || !strings.Contains(marker, tc.marker) {
			t.Errorf("%s: got %q", tc.args, got)
		}
	}
	// With the file's size known (Content-Length), the marker counts what
	// is left.
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.Write([]byte(content))
	}
	res, err := readPage(t, e, c, `,"offset":10`)
	if err != nil || !strings.HasSuffix(text(res), "\n[sandbox-router: 60 more bytes follow; call read_file with offset=40 for the next page]") {
		t.Errorf("got %q, %v", text(res), err)
	}
	e.runtime.answer = nil

	for _, args := range []string{`,"offset":101`, `,"offset":5000`} {
		if _, err := readPage(t, e, c, args); err == nil || !strings.Contains(err.Error(), "the file has 100 bytes") {
			t.Errorf("%s: err = %v", args, err)
		}
	}
	for _, args := range []string{`,"offset":-1`, `,"offset":1073741825`, `,"length":-1`, `,"length":1001`, `,"length":1.5`} {
		if _, err := readPage(t, e, c, args); err == nil {
			t.Errorf("%s accepted", args)
		}
	}
	// A missing file: the runtime's own message.
	_, err = e.call(context.Background(), c, "read_file", `{"namespace":"team-a","name":"sb1","path":"/nope"}`)
	if err == nil || !strings.Contains(err.Error(), "answered 404: no such file: /nope") {
		t.Errorf("err = %v", err)
	}
	// The path arrives escaped as one segment.
	e.runtime.reset()
	readPage(t, e, c, ``)
	if reqs := e.runtime.requests(); len(reqs) != 1 || reqs[0].RequestURI != "/download/%2Ff" || reqs[0].Method != "GET" {
		t.Errorf("requests %+v", reqs)
	}
}

// TestReadFilePagesAtRunes: a page never ends inside a character, and
// its marker points at the character it left out.
func TestReadFilePagesAtRunes(t *testing.T) {
	e, c := runtimeEnv(t, Limits{})
	e.runtime.files["/f"] = []byte("aaé€bb") // a a é(2) €(3) b b: 9 bytes
	cases := []struct {
		args, page string
		next       int
	}{
		{`,"length":3`, "aa", 2}, // would split é
		{`,"length":4`, "aaé", 4},
		{`,"length":6`, "aaé", 4}, // would split €
		{`,"offset":4,"length":3`, "€", 7},
	}
	for _, tc := range cases {
		res, err := readPage(t, e, c, tc.args)
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		want := fmt.Sprintf("%s\n[sandbox-router: more bytes follow; call read_file with offset=%d for the next page]", tc.page, tc.next)
		if got := text(res); got != want {
			t.Errorf("%s: got %q, want %q", tc.args, got, want)
		}
	}
}

// TestReadFileProgresses: paging by what the markers say always ends,
// whatever the length asked: a page shorter than its first character
// must not send the model back to the same offset forever.
func TestReadFileProgresses(t *testing.T) {
	e, c := runtimeEnv(t, Limits{})
	e.runtime.files["/f"] = []byte("€€")
	for length := 1; length <= 6; length++ {
		offset := 0
		for range 10 {
			res, err := readPage(t, e, c, fmt.Sprintf(`,"offset":%d,"length":%d`, offset, length))
			if err != nil {
				t.Fatalf("length %d offset %d: %v", length, offset, err)
			}
			_, marker, ok := strings.Cut(text(res), "offset=")
			if !ok {
				break
			}
			next, _ := strconv.Atoi(strings.Fields(marker)[0])
			if next <= offset {
				t.Errorf("length %d: the page at offset %d sends the model back to offset %d", length, offset, next)
				break
			}
			offset = next
		}
	}
}

func TestReadFileBinary(t *testing.T) {
	e, c := runtimeEnv(t, Limits{OutputBytes: 16})
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2, 3}, 10)...) // 48 bytes
	e.runtime.files["/img.png"] = png
	res, err := e.call(context.Background(), c, "read_file", `{"namespace":"team-a","name":"sb1","path":"/img.png"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Content) != 2 {
		t.Fatalf("content %d parts", len(res.Content))
	}
	er, ok := res.Content[0].(*sdk.EmbeddedResource)
	if !ok || er.Resource == nil {
		t.Fatalf("content[0] is %T", res.Content[0])
	}
	if !bytes.Equal(er.Resource.Blob, png[:16]) || er.Resource.MIMEType != "image/png" || er.Resource.URI != "sandbox://team-a/sb1/files/%2Fimg.png" {
		t.Errorf("resource %+v", er.Resource)
	}
	if got := text(res); got != "[sandbox-router: binary file, 16 bytes returned from offset 0; call read_file with offset=16 for the next page]" {
		t.Errorf("marker %q", got)
	}
	// The last page: no marker; the runtime's type when it says one.
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-custom")
		w.Write(png)
	}
	res, err = e.call(context.Background(), c, "read_file", `{"namespace":"team-a","name":"sb1","path":"/img.png","offset":40}`)
	if err != nil {
		t.Fatal(err)
	}
	if er := res.Content[0].(*sdk.EmbeddedResource); len(res.Content) != 1 || !bytes.Equal(er.Resource.Blob, png[40:]) || er.Resource.MIMEType != "application/x-custom" {
		t.Errorf("last page %+v", res.Content)
	}
	// Invalid UTF-8 without NUL is binary too.
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ab\xffcd")) }
	res, _ = e.call(context.Background(), c, "read_file", `{"namespace":"team-a","name":"sb1","path":"/x"}`)
	if _, ok := res.Content[0].(*sdk.EmbeddedResource); !ok {
		t.Errorf("invalid UTF-8 returned as %T", res.Content[0])
	}
}

func TestAsText(t *testing.T) {
	cases := []struct {
		page string
		more bool
		want string
		ok   bool
	}{
		{"hello", false, "hello", true},
		{"", false, "", true},
		{"a\x00b", false, "", false},
		{"aé", false, "aé", true},
		{"a\xc3", true, "a", true},     // cut inside é: dropped
		{"a\xe2\x82", true, "a", true}, // cut inside €
		{"a\xc3", false, "", false},    // the file's own end: binary
		{"\xff\xff\xff\xff\xff", true, "", false},
	}
	for _, c := range cases {
		got, ok := asText([]byte(c.page), c.more)
		if ok != c.ok || got != c.want {
			t.Errorf("asText(%q, %v) = %q, %v", c.page, c.more, got, ok)
		}
	}
}

func TestReadAnswer(t *testing.T) {
	notVisibleMsg := notVisible(sb1).Error()
	big := strings.Repeat("x", maxRuntimeAnswer+1)
	cases := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   string // "" : no error, and the body is returned
	}{
		{"ok", 200, nil, `{"a":1}`, ""},
		{"ok 4 MiB", 200, nil, big[:maxRuntimeAnswer], ""},
		{"too large", 200, nil, big, "larger than 4194304 bytes"},
		{"too large error", 500, nil, big, "larger than 4194304 bytes"},
		{"router forbidden", 403, nil, `{"detail":"this identity may not reach this sandbox","code":"sandbox_forbidden"}`, notVisibleMsg},
		{"router not found", 404, nil, `{"detail":"no sandbox team-a/sb1","code":"sandbox_not_found"}`, notVisibleMsg},
		{"router unauthorized", 401, nil, `{"detail":"the bearer token is not valid","code":"invalid_credentials"}`, "the router refused your credential"},
		{"router busy", 503, http.Header{"Retry-After": {"3"}}, `{"detail":"hold queue full","code":"hold_queue_full"}`,
			"the router could not serve the call (hold_queue_full: hold queue full); retry in 3 s"},
		{"router timeout", 504, nil, `{"detail":"resume timed out","code":"resume_timeout"}`, "the router could not serve the call (resume_timeout: resume timed out)"},
		{"runtime message", 500, nil, `{"message":"disk full"}`, "the sandbox's runtime answered 500: disk full"},
		{"runtime detail", 422, nil, `{"detail":"bad path"}`, "the sandbox's runtime answered 422: bad path"},
		{"runtime text", 404, nil, `Not Found`, "the sandbox's runtime answered 404: Not Found"},
		{"runtime long text", 500, nil, strings.Repeat("e", 500), "answered 500: " + strings.Repeat("e", 80) + "..."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: c.status, Header: c.header, Body: io.NopCloser(strings.NewReader(c.body))}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			raw, err := readAnswer(resp, sb1)
			if c.want == "" {
				if err != nil || string(raw) != c.body {
					t.Errorf("got %d bytes, %v", len(raw), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
	// Forbidden and missing read the same.
	forbid := &http.Response{StatusCode: 403, Body: io.NopCloser(strings.NewReader(`{"detail":"x","code":"sandbox_forbidden"}`))}
	missing := &http.Response{StatusCode: 404, Body: io.NopCloser(strings.NewReader(`{"detail":"y","code":"sandbox_not_found"}`))}
	_, e1 := readAnswer(forbid, sb1)
	_, e2 := readAnswer(missing, sb1)
	if e1 == nil || e2 == nil || e1.Error() != e2.Error() || !strings.HasPrefix(e1.Error(), "no sandbox team-a/sb1 that you may reach") {
		t.Errorf("forbidden %v, missing %v", e1, e2)
	}
}

func TestWriteFile(t *testing.T) {
	e, c := runtimeEnv(t, Limits{FileBytes: 16})
	cases := []struct {
		args    string
		content string // "" : refused
	}{
		{`"path":"/app/a.txt","content":"hello"`, "hello"},
		{`"path":"/app/a.txt","content":"hello","encoding":"text"`, "hello"},
		{`"path":"/app/bin","content":"` + base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff}) + `","encoding":"base64"`, "\x00\x01\x02\xff"},
		{`"path":"/app/a.txt","content":"` + strings.Repeat("x", 16) + `"`, strings.Repeat("x", 16)},
		{`"path":"/app/a.txt","content":"` + strings.Repeat("x", 17) + `"`, ""},
		{`"path":"/app/a.txt","content":"` + base64.StdEncoding.EncodeToString(make([]byte, 17)) + `","encoding":"base64"`, ""},
		{`"path":"/app/a.txt","content":"not base64!","encoding":"base64"`, ""},
		{`"path":"/app/a.txt","content":"x","encoding":"hex"`, ""},
		{`"path":"../etc/passwd","content":"x"`, ""},
		{`"path":"","content":"x"`, ""},
	}
	for _, tc := range cases {
		e.runtime.reset()
		res, err := e.call(context.Background(), c, "write_file", `{"namespace":"team-a","name":"sb1",`+tc.args+`}`)
		reqs := e.runtime.requests()
		if tc.content == "" {
			if err == nil || len(reqs) != 0 {
				t.Errorf("%s: accepted (%d requests)", tc.args, len(reqs))
			}
			continue
		}
		if err != nil || len(reqs) != 1 {
			t.Errorf("%s: %v (%d requests)", tc.args, err, len(reqs))
			continue
		}
		if m := structured(t, res); m["bytes"] != float64(len(tc.content)) {
			t.Errorf("%s: result %v", tc.args, m)
		}
		name, data := uploaded(t, reqs[0])
		if data != tc.content || !strings.HasPrefix(name, "/app/") {
			t.Errorf("%s: uploaded %q as %q", tc.args, data, name)
		}
	}
	// The runtime's refusal.
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 500, map[string]string{"message": "read-only file system"})
	}
	if _, err := e.call(context.Background(), c, "write_file", `{"namespace":"team-a","name":"sb1","path":"/a","content":"x"}`); err == nil ||
		!strings.Contains(err.Error(), "read-only file system") {
		t.Errorf("err = %v", err)
	}
}

// uploaded reads the file of an /upload request: its name (the whole
// path, as the runtime takes it) and its content.
func uploaded(tb testing.TB, r seenRequest) (name, content string) {
	tb.Helper()
	if r.Method != "POST" || r.RequestURI != "/upload" {
		tb.Fatalf("request %s %s", r.Method, r.RequestURI)
	}
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		tb.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	part, err := mr.NextPart()
	if err != nil {
		tb.Fatal(err)
	}
	disp, dparams, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil || disp != "form-data" || dparams["name"] != "file" {
		tb.Fatalf("part %v: %v", part.Header, err)
	}
	data, err := io.ReadAll(part)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		tb.Fatalf("more than one part: %v", err)
	}
	return dparams["filename"], string(data)
}

func TestListFilesAndExists(t *testing.T) {
	e, c := runtimeEnv(t, Limits{})
	res, err := e.call(context.Background(), c, "list_files", `{"namespace":"team-a","name":"sb1","path":"/app"}`)
	if err != nil {
		t.Fatal(err)
	}
	if m := structured(t, res); m["path"] != "/app" || len(m["entries"].([]any)) != 1 || m["note"] != nil {
		t.Errorf("listing %v", m)
	}
	// A huge directory is cut.
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
		entries := make([]map[string]string, maxListEntries+5)
		for i := range entries {
			entries[i] = map[string]string{"name": strconv.Itoa(i)}
		}
		writeJSON(w, 200, entries)
	}
	res, err = e.call(context.Background(), c, "list_files", `{"namespace":"team-a","name":"sb1","path":"/big"}`)
	if err != nil {
		t.Fatal(err)
	}
	if m := structured(t, res); len(m["entries"].([]any)) != maxListEntries || !strings.Contains(m["note"].(string), "1005 entries") {
		t.Errorf("note %v", m["note"])
	}
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"files": []string{}}) }
	if _, err := e.call(context.Background(), c, "list_files", `{"namespace":"team-a","name":"sb1","path":"/app"}`); err == nil {
		t.Error("a listing that is no list accepted")
	}

	e.runtime.answer = nil
	for path, want := range map[string]bool{"/app/main.py": true, "/nope": false} {
		res, err := e.call(context.Background(), c, "file_exists", `{"namespace":"team-a","name":"sb1","path":"`+path+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		if m := structured(t, res); m["exists"] != want || m["path"] != path {
			t.Errorf("%s: %v", path, m)
		}
	}
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"found": true}) }
	if _, err := e.call(context.Background(), c, "file_exists", `{"namespace":"team-a","name":"sb1","path":"/a"}`); err == nil {
		t.Error("an answer without exists accepted")
	}
	e.runtime.reset()
	e.runtime.answer = nil
	e.call(context.Background(), c, "list_files", `{"namespace":"team-a","name":"sb1","path":"/a b/c"}`)
	e.call(context.Background(), c, "file_exists", `{"namespace":"team-a","name":"sb1","path":"x?y#z"}`)
	reqs := e.runtime.requests()
	if len(reqs) != 2 || reqs[0].RequestURI != "/list/%2Fa%20b%2Fc" || reqs[1].RequestURI != "/exists/x%3Fy%23z" || reqs[1].Path != "/exists/x?y#z" {
		t.Errorf("requests %+v", reqs)
	}
}

// TestRuntimeToolsThroughTheRouter: a router refusal reaches the model as
// the not-visible answer, whatever the tool.
func TestRuntimeToolsThroughTheRouter(t *testing.T) {
	e, c := runtimeEnv(t, Limits{})
	e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 403, map[string]string{"detail": "this identity may not reach this sandbox", "code": "sandbox_forbidden"})
	}
	want := notVisible(sb1).Error()
	for tool, args := range map[string]string{
		"execute_command": `"command":"ls"`, "read_file": `"path":"/a"`, "write_file": `"path":"/a","content":"x"`,
		"list_files": `"path":"/"`, "file_exists": `"path":"/a"`,
	} {
		_, err := e.call(context.Background(), c, tool, `{"namespace":"team-a","name":"sb1",`+args+`}`)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v", tool, err)
		}
	}
}

// TestRuntimeAnswersAnyStatus: whatever status the sandbox answers with
// (a sandbox is untrusted code), every runtime tool returns a result or
// an error, never neither: a nil result without an error is dereferenced
// by the tool handler (limited), and the go-sdk recovers no panic, so it
// would take the router down.
func TestRuntimeAnswersAnyStatus(t *testing.T) {
	e, c := runtimeEnv(t, Limits{})
	tools := map[string]string{
		"execute_command": `"command":"ls"`, "read_file": `"path":"/a"`, "write_file": `"path":"/a","content":"x"`,
		"list_files": `"path":"/"`, "file_exists": `"path":"/a"`,
	}
	for _, status := range []int{200, 201, 202, 204, 206, 299, 301, 304, 400, 404, 500, 502} {
		for _, body := range []string{"", `{}`, `[]`, `{"exists":true}`, `{"stdout":"","stderr":"","exit_code":0}`} {
			e.runtime.answer = func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				io.WriteString(w, body)
			}
			for tool, args := range tools {
				res, err := e.call(context.Background(), c, tool, `{"namespace":"team-a","name":"sb1",`+args+`}`)
				if (res == nil) == (err == nil) {
					t.Errorf("%s, answered %d %q: result %v, error %v", tool, status, body, res, err)
				}
			}
		}
	}
}
