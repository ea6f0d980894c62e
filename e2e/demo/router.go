package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// startRouter starts the demo's main router with args and --listen-http
// on port, which its xDS server also names as the router fleet
// (--xds-router-endpoints): clients go there for sandboxes that do not
// run.
func startRouter(ctx context.Context, bin, logPath string, args []string, port int, logf func(string, ...any)) (*routerproc.Proc, error) {
	return startOnPort(ctx, bin, logPath, port, logf, func(addr string) []string {
		return append(slices.Clip(args), "--listen-http", addr, "--xds-router-endpoints", addr)
	})
}

// startOnPort starts a router whose arguments name its own HTTP address
// (args(addr) must include --listen-http addr). That address must be
// known before the router starts, so with port 0 the demo picks a free
// one, and picks again (a few times) should another process take it in
// between.
func startOnPort(ctx context.Context, bin, logPath string, port int, logf func(string, ...any), args func(addr string) []string) (*routerproc.Proc, error) {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		p, picked := port, port == 0
		if picked {
			var err error
			if p, err = freePort(); err != nil {
				return nil, err
			}
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		rp, err := routerproc.Start(ctx, routerproc.Options{Bin: bin, LogPath: logPath, Args: args(addr)})
		if err == nil || !picked || attempt == attempts || !strings.Contains(err.Error(), "address already in use") {
			return rp, err
		}
		logf("port %d was taken before the router listened on it; picking another", p)
	}
}

// waitRouter waits until /readyz answers 200 (the caches synced), the
// router leads the idle suspender's Lease, and every running sandbox
// answers through the router.
func waitRouter(ctx context.Context, p *routerproc.Proc, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string, header http.Header, want string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && !strings.Contains(string(body), want) {
			err = fmt.Errorf("no %q in the answer", want)
		}
		return resp.StatusCode, err
	}
	// waitFor waits until url answers 200 with want in the body.
	waitFor := func(what, url string, header http.Header, want string) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			code, err := get(url, header, want)
			if err == nil && code == http.StatusOK {
				return nil
			}
			select {
			case <-tick.C:
			case <-p.Exited():
				return fmt.Errorf("router exited: %v", p.ExitErr())
			case <-ctx.Done():
				return fmt.Errorf("%s: not 200 within %s (last: %d %v)", what, readyTimeout, code, err)
			}
		}
	}
	if err := waitFor("router /readyz", "http://"+p.AdminAddr+"/readyz", nil, ""); err != nil {
		return err
	}
	// The idle suspender runs once this replica leads (the demo's Lease is
	// free, so at its first try): sleepy's idle clock starts from then.
	if err := waitFor("router leading the idle suspender's Lease", "http://"+p.AdminAddr+"/metrics", nil,
		"\nsandbox_router_activator_leader 1\n"); err != nil {
		return err
	}
	for _, sb := range sandboxes {
		if sb.running {
			h := http.Header{"X-Sandbox-Id": {sb.name}, "X-Sandbox-Namespace": {sb.namespace}}
			if err := waitFor("sandbox "+sb.namespace+"/"+sb.name, "http://"+p.HTTPAddr+"/", h, ""); err != nil {
				return err
			}
		}
	}
	return nil
}
