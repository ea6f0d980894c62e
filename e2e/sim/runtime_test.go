package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// runtimeServer serves one backend's handler (the switch the runtime API
// is hooked into included) on a test server: no API server needed.
func runtimeServer(t *testing.T) *httptest.Server {
	t.Helper()
	b := newBackend(netip.MustParseAddr("127.0.0.1"), []uint16{DefaultPort}, nil, "team", "sb-pod", "sb", t.Logf)
	b.initialised.Store(true)
	srv := httptest.NewServer(b.handler(DefaultPort))
	t.Cleanup(func() {
		srv.Close()
		b.cancel()
	})
	return srv
}

// call sends a request and returns the status and body.
func call(t *testing.T, method, url, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// upload sends name and content as the SDK's Write does (multipart field
// "file").
func upload(t *testing.T, srv *httptest.Server, name string, content []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	part.Write(content)
	mw.Close()
	status, body := call(t, http.MethodPost, srv.URL+"/upload", mw.FormDataContentType(), &buf)
	return status, string(body)
}

func execute(t *testing.T, srv *httptest.Server, command string) executeResult {
	t.Helper()
	payload, _ := json.Marshal(map[string]string{"command": command})
	status, body := call(t, http.MethodPost, srv.URL+"/execute", "application/json", bytes.NewReader(payload))
	if status != http.StatusOK {
		t.Fatalf("execute %q: %d %s", command, status, body)
	}
	var res executeResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("execute %q: %v: %s", command, err, body)
	}
	return res
}

func TestRuntimeExecute(t *testing.T) {
	srv := runtimeServer(t)
	if status, body := upload(t, srv, "notes.txt", []byte("hello\n")); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, body)
	}
	cases := []struct {
		command string
		want    executeResult
	}{
		{"echo hello world", executeResult{Stdout: "hello world\n"}},
		{`echo 'a  b' "c \"d\"" e\ f`, executeResult{Stdout: "a  b c \"d\" e f\n"}},
		{"echo a > f", executeResult{Stdout: "a > f\n"}}, // no shell: no redirection
		{"echo", executeResult{Stdout: "\n"}},
		{"cat notes.txt", executeResult{Stdout: "hello\n"}},
		{"cat /notes.txt", executeResult{Stdout: "hello\n"}},
		{"cat notes.txt missing", executeResult{Stdout: "hello\n", Stderr: "cat: missing: No such file or directory\n", ExitCode: 1}},
		{"cat ../etc/passwd", executeResult{Stderr: "cat: ../etc/passwd: No such file or directory\n", ExitCode: 1}},
		{"cat /", executeResult{Stderr: "cat: /: Is a directory\n", ExitCode: 1}},
		{"pwd", executeResult{Stdout: "/app\n"}},
		{"hostname", executeResult{Stdout: "sb-pod\n"}},
		{"true", executeResult{}},
		{"false", executeResult{ExitCode: 1}},
		{"echo 'open", executeResult{Stderr: "Failed to execute command: No closing quotation", ExitCode: 1}},
		{"   ", executeResult{Stderr: "Failed to execute command: empty command", ExitCode: 1}},
	}
	for _, tc := range cases {
		if got := execute(t, srv, tc.command); got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.command, got, tc.want)
		}
	}
	for _, command := range []string{"rm -rf /", "sh -c 'echo hi'", "/bin/echo hi"} {
		got := execute(t, srv, command)
		if got.ExitCode != exitNotFound || got.Stdout != "" || !strings.Contains(got.Stderr, "command not found") {
			t.Errorf("%q: %+v, want exit 127 and a message on stderr", command, got)
		}
	}

	t.Run("bad requests", func(t *testing.T) {
		cases := []struct {
			name, method, body string
			want               int
		}{
			{"GET", http.MethodGet, "", http.StatusMethodNotAllowed},
			{"not JSON", http.MethodPost, "echo hi", http.StatusUnprocessableEntity},
			{"no command", http.MethodPost, `{"cmd": "echo hi"}`, http.StatusUnprocessableEntity},
			{"too long", http.MethodPost, `{"command": "echo ` + strings.Repeat("x", runtimeMaxCommandBytes) + `"}`, http.StatusRequestEntityTooLarge},
		}
		for _, tc := range cases {
			if status, body := call(t, tc.method, srv.URL+"/execute", "application/json", strings.NewReader(tc.body)); status != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
			}
		}
	})
}

func TestRuntimeFiles(t *testing.T) {
	srv := runtimeServer(t)
	for name, content := range map[string]string{
		"a.txt":        "alpha",
		"dir/b.txt":    "beta", // the python-runtime creates the directories
		"dir/sub/c":    "gamma",
		"100%2Fsure":   "a name with a percent sign", // %252F on the wire: decoded once, it must stay one name
		"/abs.txt":     "the leading slash is dropped",
		"dir/../d.txt": "cleaned to d.txt",
	} {
		if status, body := upload(t, srv, name, []byte(content)); status != http.StatusOK {
			t.Fatalf("upload %q: %d %s", name, status, body)
		}
	}

	t.Run("download", func(t *testing.T) {
		cases := []struct {
			path   string // as the SDK encodes it
			status int
			body   string
		}{
			{"a.txt", 200, "alpha"},
			{"%2Fa.txt", 200, "alpha"},
			{"dir%2Fb.txt", 200, "beta"},
			{"%2Fdir%2Fsub%2Fc", 200, "gamma"},
			{"100%252Fsure", 200, "a name with a percent sign"},
			{"abs.txt", 200, "the leading slash is dropped"},
			{"d.txt", 200, "cleaned to d.txt"},
			{"dir", 404, `{"message":"File not found"}`},
			{"nope", 404, `{"message":"File not found"}`},
			{"100%2Fsure", 404, `{"message":"File not found"}`}, // that is 100/sure
			{"%2E%2E%2Fetc%2Fpasswd", 403, `{"message":"Access denied"}`},
			{"dir%2F..%2F..%2Fx", 403, `{"message":"Access denied"}`},
		}
		for _, tc := range cases {
			status, body := call(t, http.MethodGet, srv.URL+"/download/"+tc.path, "", nil)
			if status != tc.status || tc.body != "" && strings.TrimSpace(string(body)) != tc.body {
				t.Errorf("/download/%s: %d %s, want %d %s", tc.path, status, body, tc.status, tc.body)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		names := func(path string) (int, string) {
			status, body := call(t, http.MethodGet, srv.URL+"/list/"+path, "", nil)
			if status != http.StatusOK {
				return status, string(body)
			}
			var entries []listEntry
			if err := json.Unmarshal(body, &entries); err != nil {
				t.Fatalf("/list/%s: %v: %s", path, err, body)
			}
			var out []string
			for _, e := range entries {
				if e.ModTime <= 0 {
					t.Errorf("/list/%s: %s has mod_time %v", path, e.Name, e.ModTime)
				}
				out = append(out, fmt.Sprintf("%s:%s:%d", e.Name, e.Type, e.Size))
			}
			return status, strings.Join(out, " ")
		}
		cases := []struct {
			path   string
			status int
			want   string
		}{
			{"%2F", 200, "100%2Fsure:file:26 a.txt:file:5 abs.txt:file:28 d.txt:file:16 dir:directory:0"},
			{"%2E", 200, "100%2Fsure:file:26 a.txt:file:5 abs.txt:file:28 d.txt:file:16 dir:directory:0"},
			{"dir", 200, "b.txt:file:4 sub:directory:0"},
			{"%2Fdir%2Fsub", 200, "c:file:5"},
			{"a.txt", 404, `{"message":"Path is not a directory"}` + "\n"},
			{"nope", 404, `{"message":"Path is not a directory"}` + "\n"},
			{"%2E%2E", 403, `{"message":"Access denied"}` + "\n"},
		}
		for _, tc := range cases {
			if status, got := names(tc.path); status != tc.status || got != tc.want {
				t.Errorf("/list/%s: %d %q, want %d %q", tc.path, status, got, tc.status, tc.want)
			}
		}
	})

	t.Run("exists", func(t *testing.T) {
		cases := []struct {
			path   string
			status int
			want   string
		}{
			{"a.txt", 200, `{"exists":true,"path":"a.txt"}`},
			{"%2Fdir", 200, `{"exists":true,"path":"/dir"}`},
			{"%2F", 200, `{"exists":true,"path":"/"}`},
			{"dir%2Fnope", 200, `{"exists":false,"path":"dir/nope"}`},
			{"%2E%2E%2Fa.txt", 403, `{"message":"Access denied"}`},
		}
		for _, tc := range cases {
			status, body := call(t, http.MethodGet, srv.URL+"/exists/"+tc.path, "", nil)
			if status != tc.status || strings.TrimSpace(string(body)) != tc.want {
				t.Errorf("/exists/%s: %d %s, want %d %s", tc.path, status, body, tc.status, tc.want)
			}
		}
		if status, _ := call(t, http.MethodPost, srv.URL+"/exists/a.txt", "", nil); status != http.StatusMethodNotAllowed {
			t.Errorf("POST /exists: %d, want 405", status)
		}
	})

	t.Run("refused uploads", func(t *testing.T) {
		cases := []struct {
			name   string
			size   int
			status int
		}{
			{"../escape.txt", 1, http.StatusForbidden},
			{"/../../escape.txt", 1, http.StatusForbidden},
			{"dir", 1, http.StatusConflict},         // a directory
			{"a.txt/under", 1, http.StatusConflict}, // under a file
			{"", 1, http.StatusConflict},            // the base directory itself
			{"big", runtimeMaxFileBytes + 1, http.StatusRequestEntityTooLarge},
			{"huge", runtimeMaxFileBytes + runtimeMultipartSlack + 1, http.StatusRequestEntityTooLarge},
		}
		for _, tc := range cases {
			if status, body := upload(t, srv, tc.name, bytes.Repeat([]byte("x"), tc.size)); status != tc.status || !strings.Contains(body, `"message"`) {
				t.Errorf("upload %q of %d bytes: %d %s, want %d with a message", tc.name, tc.size, status, body, tc.status)
			}
		}
		if status, body := call(t, http.MethodPost, srv.URL+"/upload", "text/plain", strings.NewReader("x")); status != http.StatusBadRequest {
			t.Errorf("upload without multipart: %d %s", status, body)
		}
	})
}

// TestRuntimeBounds fills a backend's tree to its total size and refuses
// the next file, keeps working for rewrites that fit, and takes parallel
// writers (run with -race).
func TestRuntimeBounds(t *testing.T) {
	srv := runtimeServer(t)
	file := bytes.Repeat([]byte("y"), runtimeMaxFileBytes)
	n := runtimeMaxTotalBytes / runtimeMaxFileBytes
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			if status, body := upload(t, srv, fmt.Sprintf("f%d", i), file); status != http.StatusOK {
				errs <- fmt.Sprintf("f%d: %d %s", i, status, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if status, body := upload(t, srv, "one-more", []byte("z")); status != http.StatusInsufficientStorage || !strings.Contains(body, "at most") {
		t.Errorf("a file past the total: %d %s, want 507", status, body)
	}
	// Rewriting a file counts its new size only.
	if status, body := upload(t, srv, "f0", []byte("small")); status != http.StatusOK {
		t.Errorf("rewrite f0 smaller: %d %s", status, body)
	}
	if status, body := upload(t, srv, "one-more", []byte("z")); status != http.StatusOK {
		t.Errorf("a small file after f0 shrank: %d %s", status, body)
	}
	if got := execute(t, srv, "cat f0 one-more"); got.Stdout != "smallz" {
		t.Errorf("cat f0 one-more: %+v", got)
	}
}

// TestRuntimeEntryBound refuses a file past the count of entries.
func TestRuntimeEntryBound(t *testing.T) {
	var fs sandboxFS
	for i := range runtimeMaxEntries {
		if err := fs.write(fmt.Sprintf("f%d", i), nil, time.Time{}); err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	if err := fs.write("over", nil, time.Time{}); err == nil || err.(*errStorage).status != http.StatusInsufficientStorage {
		t.Errorf("a file past %d entries: %v, want 507", runtimeMaxEntries, err)
	}
	if err := fs.write("f0", []byte("rewrite"), time.Time{}); err != nil {
		t.Errorf("rewriting an existing file at the bound: %v", err)
	}
}

func TestCleanPath(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"a", "a", true},
		{"/a/b", "a/b", true},
		{"//a//b/", "a/b", true},
		{"a/./b/../c", "a/c", true},
		{"/", "", true},
		{".", "", true},
		{"a/..", "", true},
		{"..", "", false},
		{"/../a", "", false},
		{"a/../../b", "", false},
	}
	for _, tc := range cases {
		if got, ok := cleanPath(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("cleanPath(%q) = %q, %t; want %q, %t", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
