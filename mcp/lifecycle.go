package mcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// The tools that change sandboxes do it with the caller's own Kubernetes
// token (Cluster): the API server authorizes the caller by RBAC and its
// audit log names the caller. The router's own credentials never write
// on a caller's behalf.

// writer returns the cluster client and checks that c can use it.
func (h *Handler) writer(c *caller) (Cluster, error) {
	if h.opts.Cluster == nil {
		return nil, errors.New("this router does not change sandboxes through MCP (no Kubernetes API configured for it)")
	}
	if !c.principal.Kubernetes() {
		return nil, errors.New("this needs a Kubernetes token: the change is made with your own credentials, and a scoped token is none")
	}
	return h.opts.Cluster, nil
}

// writerOf is writer for a change of the sandbox key, which c must also
// reach (else it is invisible, as everywhere).
func (h *Handler) writerOf(ctx context.Context, c *caller, key resolver.Key) (Cluster, error) {
	cl, err := h.writer(c)
	if err != nil {
		return nil, err
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	return cl, nil
}

// clusterError tells the model what an API answer means for it.
func clusterError(op string, key resolver.Key, err error) error {
	switch {
	case errors.Is(err, ErrForbidden):
		return fmt.Errorf("Kubernetes refused to %s %s/%s for you (RBAC): %v", op, key.Namespace, key.Name, err)
	case errors.Is(err, ErrNotFound):
		return notVisible(key)
	case errors.Is(err, ErrConflict):
		return fmt.Errorf("could not %s %s/%s: %v", op, key.Namespace, key.Name, err)
	case errors.Is(err, ErrInvalid):
		return fmt.Errorf("Kubernetes refused the %s of %s/%s as invalid: %v", op, key.Namespace, key.Name, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("could not %s %s/%s now (the Kubernetes API did not answer): retry in a few seconds", op, key.Namespace, key.Name)
}

type resumeArgs struct {
	sandboxRef
	WaitSeconds int `json:"wait_seconds,omitempty" jsonschema:"how long to wait for it to run (default 60)"`
}

func (h *Handler) resumeSandbox(ctx context.Context, c *caller, a *resumeArgs) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	wait, err := seconds("wait_seconds", a.WaitSeconds, h.limits.Wait, h.limits.MaxWait)
	if err != nil {
		return nil, err
	}
	cl, err := h.writerOf(ctx, c, key)
	if err != nil {
		return nil, err
	}
	// Patched even when it runs: RBAC is asked every time, so the
	// answer never depends on a state the caller did not choose.
	if err := cl.SetSuspended(ctx, c.token, key.Namespace, key.Name, false); err != nil {
		return nil, clusterError("resume", key, err)
	}
	res := h.waitFor(ctx, key, wait, func(r resolver.Result) bool { return r.State == resolver.StateRunning })
	return stateResult(key, res, resolver.StateRunning, wait)
}

func (h *Handler) suspendSandbox(ctx context.Context, c *caller, a *sandboxRef) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	cl, err := h.writerOf(ctx, c, key)
	if err != nil {
		return nil, err
	}
	if err := cl.SetSuspended(ctx, c.token, key.Namespace, key.Name, true); err != nil {
		return nil, clusterError("suspend", key, err)
	}
	res := h.waitFor(ctx, key, 5*time.Second, func(r resolver.Result) bool {
		return r.State == resolver.StateSuspending || r.State == resolver.StateSuspended
	})
	return jsonResult(infoOf(key, res))
}

type createArgs struct {
	Namespace   string `json:"namespace" jsonschema:"the namespace to create it in"`
	Template    string `json:"template" jsonschema:"what to create it from: the SandboxWarmPool its claim names (upstream v1beta1 claims; the pool names the SandboxTemplate), or the SandboxTemplate with v1alpha1 claims"`
	Name        string `json:"name,omitempty" jsonschema:"its name (default: generated)"`
	WaitSeconds int    `json:"wait_seconds,omitempty" jsonschema:"how long to wait for it to run (default 60; the sandbox keeps starting after)"`
}

func (h *Handler) createSandbox(ctx context.Context, c *caller, a *createArgs) (*sdk.CallToolResult, error) {
	if a.Name == "" {
		a.Name = generatedName()
	}
	key, err := (&sandboxRef{a.Namespace, a.Name}).key()
	if err != nil {
		return nil, err
	}
	if err := checkTemplate(a.Template); err != nil {
		return nil, err
	}
	wait, err := seconds("wait_seconds", a.WaitSeconds, h.limits.Wait, h.limits.MaxWait)
	if err != nil {
		return nil, err
	}
	cl, err := h.writer(c)
	if err != nil {
		return nil, err
	}
	if err := cl.CreateClaim(ctx, c.token, key.Namespace, key.Name, a.Template); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("not found: no namespace %s, or no SandboxClaim API (is the agent-sandbox extensions controller installed?): %v", key.Namespace, err)
		}
		return nil, clusterError("create", key, err)
	}
	// The claim's controller names the sandbox in the claim's status: its
	// own name on a cold start, a warm sandbox's when it adopted one.
	claim := key.Name
	deadline := time.Now().Add(wait)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	name, err := cl.ClaimedSandbox(wctx, c.token, key.Namespace, claim)
	cancel()
	if err != nil {
		return jsonResult(map[string]any{"namespace": key.Namespace, "claim": claim, "state": "creating",
			"note": fmt.Sprintf("the claim was made; its sandbox is not named yet (%v): it has the claim's name on a cold start; check with list_sandboxes", err)})
	}
	key.Name = name
	// What the router knows of that name is said only to a caller who
	// may reach it (a sandbox of that name may exist already, not theirs).
	if ok, err := h.opts.Access.Reaches(ctx, c.principal, key); err != nil || !ok {
		return jsonResult(map[string]any{"namespace": key.Namespace, "claim": claim, "name": name,
			"note": "the claim was made; you may not reach the sandbox through the router (RBAC create on sandboxes/proxy), so its state is not shown"})
	}
	res := h.waitFor(ctx, key, time.Until(deadline), func(r resolver.Result) bool { return r.State == resolver.StateRunning })
	return stateResult(key, res, resolver.StateRunning, wait)
}

// generatedName is a fresh sandbox name.
func generatedName() string {
	var b [5]byte
	rand.Read(b[:])
	return "sandbox-" + hex.EncodeToString(b[:])
}

func (h *Handler) deleteSandbox(ctx context.Context, c *caller, a *sandboxRef) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	cl, err := h.writerOf(ctx, c, key)
	if err != nil {
		return nil, err
	}
	if err := cl.Delete(ctx, c.token, key.Namespace, key.Name); err != nil {
		return nil, clusterError("delete", key, err)
	}
	return jsonResult(map[string]any{"namespace": key.Namespace, "name": key.Name, "deleted": true})
}

type previewArgs struct {
	sandboxRef
	Port       int `json:"port,omitempty" jsonschema:"the sandbox's port to open (default 8888)"`
	TTLSeconds int `json:"ttl_seconds,omitempty" jsonschema:"how long the link works (default 900, at most the router's limit)"`
}

func (h *Handler) previewURL(ctx context.Context, c *caller, a *previewArgs) (*sdk.CallToolResult, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	port, err := checkPort(a.Port)
	if err != nil {
		return nil, err
	}
	if a.TTLSeconds != 0 && (a.TTLSeconds < 10 || a.TTLSeconds > 24*3600) {
		return nil, errors.New("ttl_seconds must be 10-86400 (the router may allow less)")
	}
	if h.opts.Previews == nil {
		return nil, errors.New("this router mints no preview links (no signing key configured)")
	}
	if err := h.reach(ctx, c, key); err != nil {
		return nil, err
	}
	req := access.MintRequest{Namespace: key.Namespace, Name: key.Name, Ports: []uint16{port}}
	if a.TTLSeconds > 0 {
		req.TTL = strconv.Itoa(a.TTLSeconds) + "s"
	}
	resp, err := h.opts.Previews.Preview(ctx, c.principal, req, c.client, c.request)
	if err != nil {
		var ae *access.Error
		if errors.As(err, &ae) {
			if ae.Status == 403 && ae.Code == access.CodeForbidden || ae.Status == 404 {
				return nil, notVisible(key)
			}
			return nil, fmt.Errorf("no preview link: %s", ae.Detail)
		}
		return nil, err
	}
	out := map[string]any{"expires": resp.Expires, "port": port}
	if len(resp.Links) > 0 {
		out["url"] = resp.Links[0]
		out["urls"] = resp.Links
	} else {
		out["token"] = resp.Token
		out["note"] = "this router builds no browser links (no sessions or public address configured): send the token as Authorization: Bearer"
	}
	return jsonResult(out)
}

// waitFor waits up to d for key's state to satisfy done, on the
// resolver's change notifications; it returns the last state seen.
func (h *Handler) waitFor(ctx context.Context, key resolver.Key, d time.Duration, done func(resolver.Result) bool) resolver.Result {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		ch, stop := h.opts.Sandboxes.Changed(key)
		res := h.opts.Sandboxes.Lookup(key)
		if done(res) {
			stop()
			return res
		}
		select {
		case <-ch:
			stop()
		case <-t.C:
			stop()
			return h.opts.Sandboxes.Lookup(key)
		case <-ctx.Done():
			stop()
			return h.opts.Sandboxes.Lookup(key)
		}
	}
}

// stateResult says where a sandbox is, and whether it got where it
// should within the wait.
func stateResult(key resolver.Key, res resolver.Result, want resolver.State, wait time.Duration) (*sdk.CallToolResult, error) {
	info := infoOf(key, res)
	if res.State == want {
		return jsonResult(info)
	}
	return jsonResult(map[string]any{"sandbox": info,
		"note": fmt.Sprintf("not %s after %s; it may still get there: check with get_sandbox, or call a runtime tool, which waits for it", want, wait)})
}
