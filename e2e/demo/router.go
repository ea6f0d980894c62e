package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sandbox-router/sandbox-router/e2e/routerproc"
)

// waitRouter waits until /readyz answers 200 (the caches synced) and every
// running sandbox answers through the router.
func waitRouter(ctx context.Context, p *routerproc.Proc, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string, header http.Header) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	waitFor := func(what, url string, header http.Header) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			code, err := get(url, header)
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
	if err := waitFor("router /readyz", "http://"+p.AdminAddr+"/readyz", nil); err != nil {
		return err
	}
	for _, sb := range sandboxes {
		if sb.running {
			h := http.Header{"X-Sandbox-Id": {sb.name}, "X-Sandbox-Namespace": {sb.namespace}}
			if err := waitFor("sandbox "+sb.namespace+"/"+sb.name, "http://"+p.HTTPAddr+"/", h); err != nil {
				return err
			}
		}
	}
	return nil
}
