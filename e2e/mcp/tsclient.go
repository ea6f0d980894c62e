package mcpe2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TSStep is one step of a script for the TypeScript client
// (testdata/tsclient/client.mjs). Op is one of ping, listTools, callTool,
// listResources, listResourceTemplates, readResource, listPrompts and
// getPrompt; Name and Arguments go with callTool and getPrompt, URI with
// readResource, Params (such as {"cursor": "..."}) with the list ops.
type TSStep struct {
	Op        string `json:"op"`
	Name      string `json:"name,omitempty"`
	Arguments any    `json:"arguments,omitempty"`
	URI       string `json:"uri,omitempty"`
	Params    any    `json:"params,omitempty"`
}

// TSResult is what the TypeScript client saw: the session's negotiated
// protocol version, the server's initialize answer, and one result per step,
// in order: the raw MCP result, or {"error": message, "code": n} when the
// step failed (code, the JSON-RPC error code, when there was one).
type TSResult struct {
	ProtocolVersion    string            `json:"protocolVersion"`
	ServerInfo         TSImplementation  `json:"serverInfo"`
	ServerCapabilities json.RawMessage   `json:"serverCapabilities"`
	Instructions       string            `json:"instructions"`
	Results            []json.RawMessage `json:"results"`
	// Stderr is what node wrote to stderr (warnings), not part of the JSON.
	Stderr string `json:"-"`
}

// TSImplementation is the serverInfo of the initialize result.
type TSImplementation struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Title   string `json:"title,omitempty"`
}

// Err returns the error message of step i, or "" if the step succeeded.
func (r TSResult) Err(i int) string {
	var e struct {
		Error *string `json:"error"`
	}
	if i < 0 || i >= len(r.Results) {
		return fmt.Sprintf("no step %d (of %d)", i, len(r.Results))
	}
	if json.Unmarshal(r.Results[i], &e) != nil || e.Error == nil {
		return ""
	}
	return *e.Error
}

// Decode unmarshals the result of step i into v, or reports the step's error.
func (r TSResult) Decode(i int, v any) error {
	if msg := r.Err(i); msg != "" {
		return fmt.Errorf("step %d: %s", i, msg)
	}
	return json.Unmarshal(r.Results[i], v)
}

// DefaultTSClientTimeout bounds a RunTSClient whose context has no deadline.
const DefaultTSClientTimeout = 2 * time.Minute

var tsInstall struct {
	once sync.Once
	dir  string
	err  error
}

// InstallTSClient returns the directory of the TypeScript client
// (testdata/tsclient beside this file) after installing its locked
// dependencies with npm ci, once per process; it skips npm when
// node_modules is newer than package.json and package-lock.json. An
// exclusive lock on package-lock.json keeps test binaries of other packages
// from installing into the same directory at once. It fails with a clear
// error when node or npm is not on PATH.
func InstallTSClient(ctx context.Context) (dir string, err error) {
	tsInstall.once.Do(func() {
		tsInstall.dir, tsInstall.err = installTSClient(ctx)
	})
	return tsInstall.dir, tsInstall.err
}

func installTSClient(ctx context.Context) (string, error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("tsclient: %s is not on PATH; the MCP end-to-end tests run the TypeScript SDK with node (on Debian: apt-get install nodejs npm): %w", tool, err)
		}
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", errors.New("tsclient: cannot locate the source directory (built with -trimpath?)")
	}
	dir := filepath.Join(filepath.Dir(file), "testdata", "tsclient")
	lockPath := filepath.Join(dir, "package-lock.json")
	lock, err := os.Open(lockPath)
	if err != nil {
		return "", fmt.Errorf("tsclient: %w", err)
	}
	defer lock.Close()
	if err := flock(lock); err != nil {
		return "", fmt.Errorf("tsclient: lock %s: %w", lockPath, err)
	}
	if installed(dir) {
		return dir, nil
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tsclient: npm ci in %s: %w\n%s", dir, err, out)
	}
	return dir, nil
}

// installed tells whether npm ci has run since package.json and
// package-lock.json last changed: npm writes node_modules/.package-lock.json
// at the end of an install.
func installed(dir string) bool {
	done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		return false
	}
	for _, name := range []string{"package.json", "package-lock.json"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !done.ModTime().After(fi.ModTime()) {
			return false
		}
	}
	return true
}

// flock takes an exclusive lock, retrying when a signal interrupts the wait.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

// RunTSClient runs the TypeScript client in dir (from InstallTSClient)
// against the MCP endpoint at url, with token as its bearer token (none when
// empty), through steps, and returns what it printed. It fails when the
// client cannot connect (a refused token among the reasons), with node's
// stderr in the error; a step that fails is reported in its result instead.
// Without a deadline on ctx, DefaultTSClientTimeout applies.
func RunTSClient(ctx context.Context, dir, url, token string, steps []TSStep) (TSResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTSClientTimeout)
		defer cancel()
	}
	if steps == nil {
		steps = []TSStep{}
	}
	script, err := json.Marshal(steps)
	if err != nil {
		return TSResult{}, fmt.Errorf("tsclient: script: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MCP_URL="+url, "MCP_TOKEN="+token)
	cmd.Stdin = bytes.NewReader(script)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return TSResult{}, fmt.Errorf("tsclient: node client.mjs: %w\nstderr: %s", err, strings.TrimSpace(stderr.String()))
	}
	res := TSResult{Stderr: stderr.String()}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return TSResult{}, fmt.Errorf("tsclient: decode output: %w\nstdout: %s\nstderr: %s", err, stdout.Bytes(), strings.TrimSpace(stderr.String()))
	}
	if len(res.Results) != len(steps) {
		return res, fmt.Errorf("tsclient: %d results for %d steps", len(res.Results), len(steps))
	}
	return res, nil
}
