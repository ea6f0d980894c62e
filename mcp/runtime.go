package mcp

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// The runtime tools call the sandbox's runtime API (the one the upstream
// SDKs call: POST /execute, POST /upload, GET /download|list|exists/<path>)
// through the router, as the caller.

// maxRuntimeAnswer bounds what is read of a runtime answer that is not a
// file (an /execute result, a listing): the tool cuts it to what the
// caller asked for, but must read the JSON whole to do so.
const maxRuntimeAnswer = 4 << 20

// maxReadOffset bounds how far into a file read_file may start: the
// runtime has no ranges, so the bytes before the offset are read and
// dropped.
const maxReadOffset = 1 << 30

type executeArgs struct {
	sandboxRef
	Command        string `json:"command" jsonschema:"the command line, e.g. python3 main.py (split into arguments like a shell would, but no pipes, redirections or variables: wrap in sh -c '...' for those)"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"how long the command may run, waking a suspended sandbox included (default 60)"`
	MaxOutputBytes int    `json:"max_output_bytes,omitempty" jsonschema:"how much of stdout and of stderr to return (default 65536, at most 1048576); the rest is cut with a marker"`
}

type executeResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
}

func (h *Handler) executeCommand(ctx context.Context, c *caller, a *executeArgs) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	if err := checkCommand(a.Command); err != nil {
		return nil, err
	}
	timeout, err := seconds("timeout_seconds", a.TimeoutSeconds, h.limits.CommandTimeout, h.limits.MaxCommandTimeout)
	if err != nil {
		return nil, err
	}
	limit, err := size("max_output_bytes", a.MaxOutputBytes, h.limits.OutputBytes, h.limits.MaxOutputBytes)
	if err != nil {
		return nil, err
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]string{"command": a.Command})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := h.data.call(ctx, c, key, http.MethodPost, "/execute", "application/json", bytes.NewReader(body), timeout)
	if err != nil {
		return nil, callError(ctx, key, err)
	}
	defer resp.Body.Close()
	raw, err := readAnswer(resp, key)
	if err != nil {
		return nil, err
	}
	var res executeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("the sandbox's runtime answered /execute with something other than {stdout, stderr, exit_code}: %v", err)
	}
	res.Stdout = cut(res.Stdout, limit, "stdout")
	res.Stderr = cut(res.Stderr, limit, "stderr")
	return jsonResult(res)
}

// cut keeps the first limit bytes of s (whole runes), with a marker that
// says how much was left out and how to get it.
func cut(s string, limit int, stream string) string {
	if len(s) <= limit {
		return s
	}
	i := limit
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("\n[sandbox-router: %d more bytes of %s cut; ask for a larger max_output_bytes (up to the limit), or send the output to a file (sh -c '... > /tmp/out') and page through it with read_file]", len(s)-i, stream)
}

type fileArgs struct {
	sandboxRef
	Path string `json:"path" jsonschema:"the file's path in the sandbox, absolute or relative to its working directory"`
}

type readArgs struct {
	sandboxRef
	Path   string `json:"path" jsonschema:"the file's path in the sandbox"`
	Offset int    `json:"offset,omitempty" jsonschema:"the byte to start at (default 0): for the next page of a large file"`
	Length int    `json:"length,omitempty" jsonschema:"how many bytes to return (default 65536, at most 1048576)"`
}

func (h *Handler) readFile(ctx context.Context, c *caller, a *readArgs) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	seg, err := runtimePath(a.Path)
	if err != nil {
		return nil, err
	}
	if a.Offset < 0 || a.Offset > maxReadOffset {
		return nil, fmt.Errorf("offset must be 0-%d", maxReadOffset)
	}
	length, err := size("length", a.Length, h.limits.OutputBytes, h.limits.MaxOutputBytes)
	if err != nil {
		return nil, err
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	resp, err := h.data.call(ctx, c, key, http.MethodGet, "/download/"+seg, "", nil, h.limits.CommandTimeout)
	if err != nil {
		return nil, callError(ctx, key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The runtime is the tenant's code: any other answer, a 2xx
		// included, is no file.
		if _, err := readAnswer(resp, key); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("the sandbox's runtime answered /download with %d, not the file", resp.StatusCode)
	}
	if n, err := io.CopyN(io.Discard, resp.Body, int64(a.Offset)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the file has %d bytes: offset %d is past its end", n, a.Offset)
		}
		return nil, fmt.Errorf("reading the file: %v", err)
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, int64(length)+1))
	if err != nil {
		return nil, fmt.Errorf("reading the file: %v", err)
	}
	more := len(page) > length
	if more {
		page = page[:length]
	}
	next := a.Offset + len(page)
	total := resp.Header.Get("Content-Length")
	if text, ok := asText(page, more); ok {
		if more {
			left := "more bytes follow"
			if n, err := strconv.Atoi(total); err == nil {
				left = fmt.Sprintf("%d more bytes follow", n-(a.Offset+len(text)))
			}
			text += fmt.Sprintf("\n[sandbox-router: %s; call read_file with offset=%d for the next page]", left, a.Offset+len(text))
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil
	}
	mimeType := resp.Header.Get("Content-Type")
	if mimeType == "" || mimeType == "application/octet-stream" {
		mimeType = http.DetectContentType(page)
	}
	res := &sdk.CallToolResult{Content: []sdk.Content{&sdk.EmbeddedResource{Resource: &sdk.ResourceContents{
		URI: fileURI(key, a.Path), MIMEType: mimeType, Blob: page,
	}}}}
	if more {
		res.Content = append(res.Content, &sdk.TextContent{Text: fmt.Sprintf("[sandbox-router: binary file, %d bytes returned from offset %d; call read_file with offset=%d for the next page]", len(page), a.Offset, next)})
	}
	return res, nil
}

// asText returns page as text when it is UTF-8 without NUL bytes; a page
// cut inside a character (more) drops the partial character.
func asText(page []byte, more bool) (string, bool) {
	if bytes.IndexByte(page, 0) >= 0 {
		return "", false
	}
	if more {
		for i := 0; i < utf8.UTFMax && len(page) > 0; i++ {
			if utf8.Valid(page) {
				break
			}
			page = page[:len(page)-1]
		}
	}
	if !utf8.Valid(page) || (more && len(page) == 0) {
		// Empty after the cut: a length shorter than one character. As
		// bytes, the page still moves the reader on.
		return "", false
	}
	return string(page), true
}

type writeArgs struct {
	sandboxRef
	Path     string `json:"path" jsonschema:"the file's path in the sandbox; missing directories are created"`
	Content  string `json:"content" jsonschema:"the file's content: text, or base64 when encoding is base64"`
	Encoding string `json:"encoding,omitempty" jsonschema:"text (the default) or base64 (for binary content)"`
}

func (h *Handler) writeFile(ctx context.Context, c *caller, a *writeArgs) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	if _, err := runtimePath(a.Path); err != nil {
		return nil, err
	}
	data := []byte(a.Content)
	switch a.Encoding {
	case "", "text":
	case "base64":
		if data, err = base64.StdEncoding.DecodeString(a.Content); err != nil {
			return nil, fmt.Errorf("content is not standard base64: %v", err)
		}
	default:
		return nil, fmt.Errorf("encoding %q is not text or base64", clip(a.Encoding))
	}
	if len(data) > h.limits.FileBytes {
		return nil, fmt.Errorf("the file is %d bytes, more than the %d a write may carry: split it and append with execute_command", len(data), h.limits.FileBytes)
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile("file", a.Path) // the runtime takes the name with its directories
	if err != nil {
		return nil, err
	}
	part.Write(data)
	mw.Close()
	resp, err := h.data.call(ctx, c, key, http.MethodPost, "/upload", mw.FormDataContentType(), &body, h.limits.CommandTimeout)
	if err != nil {
		return nil, callError(ctx, key, err)
	}
	defer resp.Body.Close()
	if _, err := readAnswer(resp, key); err != nil {
		return nil, err
	}
	return jsonResult(map[string]any{"path": a.Path, "bytes": len(data)})
}

// maxListEntries bounds the entries list_files returns.
const maxListEntries = 1000

func (h *Handler) listFiles(ctx context.Context, c *caller, a *fileArgs) (*sdk.CallToolResult, error) {
	raw, err := h.pathCall(ctx, c, a, "/list/")
	if err != nil {
		return nil, err
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("the sandbox's runtime answered /list with something other than a list: %v", err)
	}
	out := map[string]any{"path": a.Path, "entries": entries}
	if len(entries) > maxListEntries {
		out["entries"] = entries[:maxListEntries]
		out["note"] = fmt.Sprintf("%d entries, the first %d shown: list a subdirectory, or run ls through execute_command with a filter", len(entries), maxListEntries)
	}
	return jsonResult(out)
}

func (h *Handler) fileExists(ctx context.Context, c *caller, a *fileArgs) (*sdk.CallToolResult, error) {
	raw, err := h.pathCall(ctx, c, a, "/exists/")
	if err != nil {
		return nil, err
	}
	var ans struct {
		Exists *bool `json:"exists"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Exists == nil {
		return nil, errors.New("the sandbox's runtime answered /exists without {exists}")
	}
	return jsonResult(map[string]any{"path": a.Path, "exists": *ans.Exists})
}

// pathCall is a GET of a runtime operation on a path: its JSON answer.
func (h *Handler) pathCall(ctx context.Context, c *caller, a *fileArgs, op string) ([]byte, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	seg, err := runtimePath(a.Path)
	if err != nil {
		return nil, err
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	resp, err := h.data.call(ctx, c, key, http.MethodGet, op+seg, "", nil, h.limits.CommandTimeout)
	if err != nil {
		return nil, callError(ctx, key, err)
	}
	defer resp.Body.Close()
	return readAnswer(resp, key)
}

// readAnswer reads a runtime answer (bounded) and turns a refusal into
// an error the model can act on: the router's own errors by their code,
// the runtime's by its message.
func readAnswer(resp *http.Response, key resolver.Key) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRuntimeAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading the sandbox's answer: %v", err)
	}
	if len(raw) > maxRuntimeAnswer {
		return nil, fmt.Errorf("the sandbox's answer is larger than %d bytes: send the output to a file (sh -c '... > /tmp/out') and page through it with read_file", maxRuntimeAnswer)
	}
	if resp.StatusCode/100 == 2 {
		return raw, nil
	}
	var e struct {
		Code    string `json:"code"`
		Detail  string `json:"detail"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &e)
	// The router's own answers are told by their codes; a sandbox that
	// answers with a "code" of its own is the sandbox.
	if routerCodes[e.Code] {
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusForbidden:
			return nil, notVisible(key)
		case http.StatusUnauthorized:
			return nil, errors.New("the router refused your credential for this call: get a fresh token")
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			return nil, fmt.Errorf("the router could not serve the call (%s: %s); retry in %s s", e.Code, clip(e.Detail), ra)
		}
		return nil, fmt.Errorf("the router could not serve the call (%s: %s)", e.Code, clip(e.Detail))
	}
	msg := cmp.Or(e.Message, e.Detail, string(raw))
	return nil, fmt.Errorf("the sandbox's runtime answered %d: %s", resp.StatusCode, clip(msg))
}

// routerCodes are the codes of the router's own answers to a request
// (router/errors.go and access/errors.go) that readAnswer explains.
var routerCodes = map[string]bool{
	"sandbox_not_found": true, "sandbox_forbidden": true, "missing_credentials": true, "invalid_credentials": true,
	"sandbox_suspended": true, "sandbox_suspending": true, "sandbox_starting": true, "sandbox_finished": true,
	"router_not_ready": true, "upstream_connect_failed": true, "upstream_timeout": true, "upstream_protocol_error": true,
	"request_body_too_large": true, "router_shutting_down": true, "upstream_busy": true, "connection_limit": true,
	"upstream_connection_limit": true, "rate_limited": true, "sandbox_busy": true, "access_unavailable": true,
	"too_many_failed_credentials": true, "hold_queue_full": true, "resume_timeout": true, "resume_failed": true, "sandbox_deleted": true,
}

// callError is a runtime call that got no answer.
func callError(ctx context.Context, key resolver.Key, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("sandbox %s/%s did not answer in time (%v): raise timeout_seconds, or check it with get_sandbox", key.Namespace, key.Name, err)
	}
	return fmt.Errorf("the call to sandbox %s/%s failed: %v", key.Namespace, key.Name, err)
}

// fileURI names a file of a sandbox in a result.
func fileURI(key resolver.Key, path string) string {
	return sandboxURI(key) + "/files/" + url.PathEscape(path)
}
