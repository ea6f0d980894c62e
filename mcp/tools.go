package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Limits bound what one identity may ask of the endpoint. Zero values
// take the defaults.
type Limits struct {
	// CallsPerSecond and CallBurst: the rate of tool calls (10/s, 20).
	CallsPerSecond float64
	CallBurst      int
	// ConcurrentCalls running at once (8); TotalCalls, of all identities
	// together (64): what bounds the memory of the calls (a write_file
	// holds its file a few times over).
	ConcurrentCalls, TotalCalls int
	// SessionsPerCaller open at once (16); Callers, identities served at
	// once (10000); SessionIdle closes a session without requests (30m).
	SessionsPerCaller int
	Callers           int
	SessionIdle       time.Duration
	// RefreshEvery rechecks what each caller sees (1m): RoleBindings
	// change without any sandbox changing.
	RefreshEvery time.Duration
	// RequestBytes bounds an HTTP request body (8 MiB).
	RequestBytes int64
	// CommandTimeout is execute_command's default (60s), MaxCommandTimeout
	// the most a call may ask (10m).
	CommandTimeout, MaxCommandTimeout time.Duration
	// OutputBytes is what a tool returns of each output by default
	// (64 KiB); MaxOutputBytes the most a call may ask (1 MiB).
	OutputBytes, MaxOutputBytes int
	// FileBytes bounds write_file's content (4 MiB).
	FileBytes int
	// Reviews bounds the per-sandbox access reviews one listing may cost
	// (500) when the caller reaches sandboxes one by one.
	Reviews int
	// Resources bounds the sandboxes a caller's resource list holds (500).
	Resources int
	// Wait is how long resume_sandbox and create_sandbox wait for the
	// sandbox to run by default (60s); MaxWait the most they may (5m).
	Wait, MaxWait time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.CallsPerSecond <= 0 {
		l.CallsPerSecond = 10
	}
	def(&l.CallBurst, 20)
	def(&l.ConcurrentCalls, 8)
	def(&l.TotalCalls, 64)
	def(&l.SessionsPerCaller, 16)
	def(&l.Callers, 10000)
	defD(&l.SessionIdle, 30*time.Minute)
	defD(&l.RefreshEvery, time.Minute)
	if l.RequestBytes <= 0 {
		l.RequestBytes = 8 << 20
	}
	defD(&l.CommandTimeout, time.Minute)
	defD(&l.MaxCommandTimeout, 10*time.Minute)
	def(&l.OutputBytes, 64<<10)
	def(&l.MaxOutputBytes, 1<<20)
	def(&l.FileBytes, 4<<20)
	def(&l.Reviews, 500)
	def(&l.Resources, 500)
	defD(&l.Wait, time.Minute)
	defD(&l.MaxWait, 5*time.Minute)
	return l
}

// tool is one entry of the tool table: what clients see, and what runs.
type tool struct {
	def *sdk.Tool
	run func(ctx context.Context, c *caller, args json.RawMessage) (*sdk.CallToolResult, error)
}

// newTool describes a tool whose arguments decode into In. The schema is
// derived from In (descriptions from its jsonschema tags); arguments are
// decoded strictly (an unknown field is an error) and then checked by
// the tool itself before anything reaches a sandbox or the cluster.
func newTool[In any](name, title, description string, ann sdk.ToolAnnotations, run func(context.Context, *caller, *In) (*sdk.CallToolResult, error)) tool {
	schema, err := jsonschema.For[In](nil)
	if err != nil {
		panic(fmt.Sprintf("mcp: schema of %s: %v", name, err)) // a programming error
	}
	ann.Title = title
	return tool{
		def: &sdk.Tool{Name: name, Title: title, Description: description, InputSchema: schema, Annotations: &ann},
		run: func(ctx context.Context, c *caller, raw json.RawMessage) (*sdk.CallToolResult, error) {
			in := new(In)
			if err := decodeArgs(raw, in); err != nil {
				return nil, err
			}
			return run(ctx, c, in)
		},
	}
}

// decodeArgs decodes a tool's arguments strictly: one JSON object, no
// unknown fields.
func decodeArgs(raw json.RawMessage, into any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("the arguments do not fit the tool's input schema: %s", clip(err.Error()))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("the arguments hold more than one JSON value")
	}
	return nil
}

var (
	readOnly    = sdk.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: new(false)}
	idempotent  = sdk.ToolAnnotations{IdempotentHint: true, DestructiveHint: new(false), OpenWorldHint: new(false)}
	destructive = sdk.ToolAnnotations{DestructiveHint: new(true), OpenWorldHint: new(false)}
	open        = sdk.ToolAnnotations{DestructiveHint: new(true), OpenWorldHint: new(true)}
)

// toolTable is every tool (clients list them by name).
func (h *Handler) toolTable() []tool {
	return []tool{
		newTool("list_sandboxes", "List sandboxes",
			"The sandboxes you may reach, with their state (running, starting, suspending, suspended, finished); filter by namespace, state and (with a Kubernetes token, in a namespace) label selector.",
			readOnly, h.listSandboxes),
		newTool("get_sandbox", "Get a sandbox", "One sandbox's state and UID.", readOnly, h.getSandbox),
		newTool("resume_sandbox", "Resume a sandbox",
			"Resume a suspended sandbox (needs RBAC patch on it) and wait until it runs.", idempotent, h.resumeSandbox),
		newTool("suspend_sandbox", "Suspend a sandbox",
			"Suspend a sandbox (needs RBAC patch on it): its pod is deleted, its volumes kept; any runtime tool resumes it.", idempotent, h.suspendSandbox),
		newTool("execute_command", "Execute a command",
			"Run a command in the sandbox (no shell: arguments are split like a shell would, without pipes or redirections). A suspended sandbox is woken first. Returns stdout, stderr and the exit code; long outputs are cut with a marker.",
			open, h.executeCommand),
		newTool("read_file", "Read a file",
			"Read a file of the sandbox: text is returned as text, binary content as an embedded resource. Large files are returned a page at a time: the marker says which offset to ask for next.",
			readOnly, h.readFile),
		newTool("write_file", "Write a file",
			"Write a file in the sandbox (directories are created), from text or base64.", destructive, h.writeFile),
		newTool("list_files", "List files", "The entries of a directory of the sandbox.", readOnly, h.listFiles),
		newTool("file_exists", "Check a file", "Whether a path exists in the sandbox.", readOnly, h.fileExists),
		newTool("preview_url", "Preview link",
			"A short-lived browser link to a port of the sandbox (a scoped token limited to it); needs a Kubernetes token.",
			readOnly, h.previewURL),
		newTool("create_sandbox", "Create a sandbox",
			"Create a sandbox from a template (a SandboxClaim of its warm pool, made with your own Kubernetes credentials) and wait until it runs.",
			destructive, h.createSandbox),
		newTool("delete_sandbox", "Delete a sandbox",
			"Delete a sandbox (its SandboxClaim when it has one) with your own Kubernetes credentials.", destructive, h.deleteSandbox),
	}
}

// limited runs a tool call inside the caller's limits: its rate, the
// calls it has running, and it turns every error into a tool error (a
// result the model reads, with a reason it can act on), counted by tool
// and outcome.
func (h *Handler) limited(t tool) sdk.ToolHandler {
	name := t.def.Name
	return func(ctx context.Context, req *sdk.CallToolRequest) (res *sdk.CallToolResult, _ error) {
		c := callerOf(req.Extra)
		if c == nil {
			return toolError("this call carries no authenticated caller"), nil
		}
		cs := c.server
		if !cs.calls.Allow() {
			h.metrics.call(name, "rate_limited")
			return toolError(fmt.Sprintf("rate limited: at most %g tool calls per second for your identity; wait a second and retry", h.limits.CallsPerSecond)), nil
		}
		select {
		case cs.inflight <- struct{}{}:
			defer func() { <-cs.inflight }()
		default:
			h.metrics.call(name, "concurrency_limited")
			return toolError(fmt.Sprintf("too many calls at once: at most %d run together for your identity; wait for one to end", h.limits.ConcurrentCalls)), nil
		}
		select {
		case h.inflight <- struct{}{}:
			defer func() { <-h.inflight }()
		default:
			h.metrics.call(name, "concurrency_limited")
			return toolError("the router is running as many tool calls as it may: retry in a second"), nil
		}
		start := time.Now()
		defer func() { h.metrics.seconds.WithLabelValues(name).Observe(time.Since(start).Seconds()) }()
		// The go-sdk recovers no panic: one in a tool would end the
		// router. A bug becomes the caller's tool error, and a log line.
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("mcp: a tool panicked", "tool", name, "panic", p)
				h.metrics.call(name, "error")
				res = toolError("the tool failed (an internal error of the router)")
			}
		}()
		res, err := t.run(ctx, c, req.Params.Arguments)
		outcome := "ok"
		switch {
		case err != nil:
			outcome = "error"
			res = toolError(err.Error())
		case res == nil:
			outcome = "error"
			res = toolError("the tool returned nothing (an internal error of the router)")
		case res.IsError:
			outcome = "error"
		}
		h.metrics.call(name, outcome)
		return res, nil
	}
}

func toolError(msg string) *sdk.CallToolResult {
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: msg}}}
}

// jsonResult is a result whose text is v as JSON, also given as the
// structured content.
func jsonResult(v any) (*sdk.CallToolResult, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}, StructuredContent: v}, nil
}
