package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The sandbox runtime API, as the upstream python-runtime example serves it
// inside a sandbox pod and the agent-sandbox SDKs call it (their "legacy"
// runtime): POST /execute, POST /upload, GET /download/<path>,
// GET /list/<path>, GET /exists/<path>, the path percent-encoded as one
// segment. The files live in memory, one tree per backend (a new pod starts
// empty, as a new pod's emptyDir does), and /execute interprets a handful
// of commands itself: a test sandbox must never run a real process on the
// test machine.
//
// What the python-runtime does, and so does this: paths are relative to the
// sandbox's base directory (a leading "/" is dropped), and one that leaves
// it through ".." is refused with 403; commands run without a shell
// (shlex-split, so "echo a > f" prints "a > f"); errors are JSON
// {"message": ...}.

// The runtime's bounds: the sim shares the test process's memory.
const (
	runtimeMaxFileBytes    = 1 << 20  // one file
	runtimeMaxTotalBytes   = 8 << 20  // all files of a backend
	runtimeMaxEntries      = 1024     // files and directories of a backend
	runtimeMaxCommandBytes = 64 << 10 // an /execute request body
	// runtimeMultipartSlack is what an upload's body may carry besides
	// the file: boundaries, part headers, other fields.
	runtimeMultipartSlack = 64 << 10
	// runtimeBaseDir is where the tree is mounted, as pwd says; the
	// python-runtime's default SANDBOX_BASE_DIR.
	runtimeBaseDir = "/app"
)

// The exit status of a command the interpreter does not know, as a shell
// gives it.
const exitNotFound = 127

// isRuntimePath reports whether path belongs to the runtime API.
func isRuntimePath(path string) bool {
	switch path {
	case "/execute", "/upload":
		return true
	}
	for _, p := range []string{"/download/", "/list/", "/exists/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// memFile is a file of the tree; a nil data with dir set is a directory.
type memFile struct {
	dir  bool
	data []byte
	mod  time.Time
}

// sandboxFS is the in-memory tree of one backend; the zero value is an
// empty tree. Keys are cleaned paths relative to the root ("a/b.txt"); the
// root itself ("") is always a directory and never stored.
type sandboxFS struct {
	mu      sync.Mutex
	entries map[string]*memFile
	total   int64 // bytes of all files
}

// errStorage is a write past a bound of the tree.
type errStorage struct {
	status int
	msg    string
}

func (e *errStorage) Error() string { return e.msg }

// cleanPath resolves p against the root the way the python-runtime's
// get_safe_path does (leading "/" dropped, "." and ".." applied), and
// reports false when the result would leave the root.
func cleanPath(p string) (string, bool) {
	var parts []string
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return "", false
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, seg)
		}
	}
	return strings.Join(parts, "/"), true
}

// parentDirs lists the directories above rel, outermost first.
func parentDirs(rel string) []string {
	var dirs []string
	for i := range len(rel) {
		if rel[i] == '/' {
			dirs = append(dirs, rel[:i])
		}
	}
	return dirs
}

// write stores data at rel, creating the directories above it.
func (fs *sandboxFS) write(rel string, data []byte, now time.Time) error {
	if rel == "" {
		return &errStorage{http.StatusConflict, "the base directory is a directory"}
	}
	if len(data) > runtimeMaxFileBytes {
		return &errStorage{http.StatusRequestEntityTooLarge, fmt.Sprintf("file of %d bytes: the sandbox takes files up to %d bytes", len(data), runtimeMaxFileBytes)}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.entries == nil {
		fs.entries = map[string]*memFile{}
	}
	var newDirs []string
	for _, d := range parentDirs(rel) {
		switch e := fs.entries[d]; {
		case e == nil:
			newDirs = append(newDirs, d)
		case !e.dir:
			return &errStorage{http.StatusConflict, fmt.Sprintf("%s is a file, not a directory", d)}
		}
	}
	old := fs.entries[rel]
	if old != nil && old.dir {
		return &errStorage{http.StatusConflict, fmt.Sprintf("%s is a directory", rel)}
	}
	added := len(newDirs)
	var oldSize int64
	if old != nil {
		oldSize = int64(len(old.data))
	} else {
		added++
	}
	if len(fs.entries)+added > runtimeMaxEntries {
		return &errStorage{http.StatusInsufficientStorage, fmt.Sprintf("the sandbox holds at most %d files and directories", runtimeMaxEntries)}
	}
	if total := fs.total - oldSize + int64(len(data)); total > runtimeMaxTotalBytes {
		return &errStorage{http.StatusInsufficientStorage, fmt.Sprintf("the sandbox holds at most %d bytes of files (%d in use)", runtimeMaxTotalBytes, fs.total)}
	}
	for _, d := range newDirs {
		fs.entries[d] = &memFile{dir: true, mod: now}
	}
	fs.entries[rel] = &memFile{data: data, mod: now}
	fs.total += int64(len(data)) - oldSize
	return nil
}

// stat returns a copy of the entry at rel (the root is a directory).
func (fs *sandboxFS) stat(rel string) (memFile, bool) {
	if rel == "" {
		return memFile{dir: true}, true
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	e := fs.entries[rel]
	if e == nil {
		return memFile{}, false
	}
	return *e, true // data is never written in place: sharing it is safe
}

// listEntry is the python-runtime's listing entry.
type listEntry struct {
	Name    string  `json:"name"`
	Size    int64   `json:"size"`
	Type    string  `json:"type"`
	ModTime float64 `json:"mod_time"` // POSIX seconds
}

// list returns the entries directly under the directory rel, by name.
func (fs *sandboxFS) list(rel string) ([]listEntry, bool) {
	if e, ok := fs.stat(rel); !ok || !e.dir {
		return nil, false
	}
	prefix := rel + "/"
	if rel == "" {
		prefix = ""
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := []listEntry{} // an empty directory lists as [], not null
	for p, e := range fs.entries {
		name, ok := strings.CutPrefix(p, prefix)
		if !ok || name == "" || strings.Contains(name, "/") {
			continue
		}
		le := listEntry{Name: name, Size: int64(len(e.data)), Type: "file", ModTime: float64(e.mod.UnixNano()) / 1e9}
		if e.dir {
			le.Type = "directory"
		}
		out = append(out, le)
	}
	slices.SortFunc(out, func(a, b listEntry) int { return strings.Compare(a.Name, b.Name) })
	return out, true
}

// serveRuntime answers a request of the runtime API (isRuntimePath).
func (b *backend) serveRuntime(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/execute":
		if allowMethods(w, r, http.MethodPost) {
			b.serveExecute(w, r)
		}
		return
	case "/upload":
		if allowMethods(w, r, http.MethodPost) {
			b.serveUpload(w, r)
		}
		return
	}
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	// The SDK sends the path as one percent-encoded segment
	// (/download/%2Ftmp%2Fa): decode it once, from the bytes that came.
	op, encoded, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	decoded, err := url.PathUnescape(encoded)
	if err != nil {
		runtimeError(w, http.StatusBadRequest, "malformed percent-encoding in the path")
		return
	}
	rel, ok := cleanPath(decoded)
	if !ok {
		runtimeError(w, http.StatusForbidden, "Access denied")
		return
	}
	switch op {
	case "download":
		e, ok := b.fs.stat(rel)
		if !ok || e.dir {
			runtimeError(w, http.StatusNotFound, "File not found")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(e.data)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(e.data)
		}
	case "list":
		entries, ok := b.fs.list(rel)
		if !ok {
			runtimeError(w, http.StatusNotFound, "Path is not a directory")
			return
		}
		runtimeJSON(w, http.StatusOK, entries)
	case "exists":
		_, ok := b.fs.stat(rel)
		runtimeJSON(w, http.StatusOK, map[string]any{"path": decoded, "exists": ok})
	}
}

// serveUpload stores the multipart field "file" under its file name, which
// may carry directories (created as needed), as the python-runtime does.
func (b *backend) serveUpload(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, runtimeMaxFileBytes+runtimeMultipartSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		runtimeError(w, http.StatusBadRequest, "want a multipart/form-data body: "+err.Error())
		return
	}
	for {
		part, err := mr.NextPart()
		if err != nil {
			if errors.Is(err, io.EOF) {
				runtimeError(w, http.StatusBadRequest, `no multipart field "file"`)
			} else {
				uploadReadError(w, err)
			}
			return
		}
		if part.FormName() != "file" {
			continue // NextPart skips what is left of it
		}
		// Part.FileName keeps only the base name; the python-runtime
		// takes the name as sent, directories included.
		_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		name := params["filename"]
		rel, ok := cleanPath(name)
		if !ok {
			runtimeError(w, http.StatusForbidden, "Access denied")
			return
		}
		data, err := io.ReadAll(io.LimitReader(part, runtimeMaxFileBytes+1))
		if err != nil {
			uploadReadError(w, err)
			return
		}
		if err := b.fs.write(rel, data, time.Now()); err != nil {
			var se *errStorage
			if errors.As(err, &se) {
				runtimeError(w, se.status, "File upload failed: "+se.msg)
				return
			}
			runtimeError(w, http.StatusInternalServerError, "File upload failed: "+err.Error())
			return
		}
		runtimeJSON(w, http.StatusOK, map[string]string{"message": fmt.Sprintf("File '%s' uploaded successfully.", name)})
		return
	}
}

// uploadReadError answers an upload whose body could not be read: too
// large, or broken.
func uploadReadError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		runtimeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("File upload failed: the sandbox takes files up to %d bytes", runtimeMaxFileBytes))
		return
	}
	runtimeError(w, http.StatusBadRequest, "File upload failed: "+err.Error())
}

// executeResult is the python-runtime's /execute answer.
type executeResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

// serveExecute runs {"command": "..."} through the interpreter.
func (b *backend) serveExecute(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, runtimeMaxCommandBytes)
	var req struct {
		Command *string `json:"command"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			runtimeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the command is longer than %d bytes", runtimeMaxCommandBytes))
			return
		}
		runtimeError(w, http.StatusUnprocessableEntity, "want JSON {\"command\": \"...\"}: "+err.Error())
		return
	}
	if req.Command == nil {
		runtimeError(w, http.StatusUnprocessableEntity, `want JSON {"command": "..."}: no command`)
		return
	}
	runtimeJSON(w, http.StatusOK, b.execute(*req.Command))
}

// execute interprets command: a tiny, safe subset of what a sandbox runs.
//
//	echo ARGS...   prints the arguments, space-separated, and a newline
//	cat FILES...   prints the files of the tree (same path rules as the API)
//	pwd            prints the base directory
//	hostname       prints the pod's name, which tells a test which pod ran it
//	true, false    exit 0 and 1
//
// Anything else exits 127 with a message on stderr, as a shell would.
func (b *backend) execute(command string) executeResult {
	args, err := splitCommand(command)
	if err != nil {
		return executeResult{Stderr: "Failed to execute command: " + err.Error(), ExitCode: 1}
	}
	if len(args) == 0 {
		return executeResult{Stderr: "Failed to execute command: empty command", ExitCode: 1}
	}
	switch args[0] {
	case "echo":
		return executeResult{Stdout: strings.Join(args[1:], " ") + "\n"}
	case "pwd":
		return executeResult{Stdout: runtimeBaseDir + "\n"}
	case "hostname":
		return executeResult{Stdout: b.pod + "\n"}
	case "true":
		return executeResult{}
	case "false":
		return executeResult{ExitCode: 1}
	case "cat":
		var res executeResult
		var out, errs strings.Builder
		for _, name := range args[1:] {
			rel, ok := cleanPath(name)
			e, found := b.fs.stat(rel)
			switch {
			case !ok || !found:
				fmt.Fprintf(&errs, "cat: %s: No such file or directory\n", name)
				res.ExitCode = 1
			case e.dir:
				fmt.Fprintf(&errs, "cat: %s: Is a directory\n", name)
				res.ExitCode = 1
			default:
				out.Write(e.data)
			}
		}
		res.Stdout, res.Stderr = out.String(), errs.String()
		return res
	default:
		return executeResult{Stderr: fmt.Sprintf("sh: %s: command not found (the simulated sandbox runs echo, cat, pwd, hostname, true and false)\n", args[0]), ExitCode: exitNotFound}
	}
}

// splitCommand splits a command line into words as Python's shlex.split
// does in POSIX mode: whitespace separates, '...' is literal, "..." keeps
// \" and \\ escapes, a backslash outside quotes escapes the next byte.
func splitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 >= len(s) {
				return nil, errors.New("No escaped character")
			}
			i++
			cur.WriteByte(s[i])
		case c == '\'':
			inWord = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("No closing quotation")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, errors.New("No closing quotation")
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// allowMethods answers 405 unless r's method is one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	runtimeError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	return false
}

func runtimeError(w http.ResponseWriter, status int, msg string) {
	runtimeJSON(w, status, map[string]string{"message": msg})
}

func runtimeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
