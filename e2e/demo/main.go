// Command demo runs the local demo: a few simulated sandboxes (real HTTP
// servers on their own loopback addresses), a routes file, and the real
// router binary in front of them. It prints curl lines that work and stops
// everything it started on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type sandbox struct {
	name, namespace, ip, state string
}

var sandboxes = []sandbox{
	{"alpha", "default", "127.0.0.2", "running"},
	{"beta", "team-a", "127.0.0.3", "running"},
	{"sleepy", "default", "", "suspended"},
}

func main() {
	routerBin := flag.String("router", "bin/sandbox-router", "router binary")
	port := flag.Int("port", 8080, "router HTTP port")
	admin := flag.Int("admin-port", 9090, "router admin port")
	flag.Parse()
	if err := run(*routerBin, *port, *admin); err != nil {
		log.Fatal(err)
	}
}

func run(routerBin string, port, admin int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "sandbox-router-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var routes strings.Builder
	routes.WriteString("sandboxes:\n")
	for _, sb := range sandboxes {
		fmt.Fprintf(&routes, "  - {name: %s, namespace: %s, state: %s", sb.name, sb.namespace, sb.state)
		if sb.ip != "" {
			fmt.Fprintf(&routes, ", podIP: %s", sb.ip)
			ln, err := net.Listen("tcp", sb.ip+":8888")
			if err != nil {
				return fmt.Errorf("sandbox %s: %w", sb.name, err)
			}
			srv := &http.Server{Handler: sandboxHandler(sb.name), ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()
		}
		routes.WriteString("}\n")
	}
	routesFile := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesFile, []byte(routes.String()), 0o644); err != nil {
		return err
	}

	cmd := exec.Command(routerBin,
		"--routes", routesFile,
		"--listen-http", fmt.Sprintf("127.0.0.1:%d", port),
		"--listen-admin", fmt.Sprintf("127.0.0.1:%d", admin),
		"--base-domain", "sandbox.localhost",
		"--allow-loopback-pod-ip",
		"--drain-delay", "0s",
		"--access-log", filepath.Join(dir, "access.log"))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start router: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)); err != nil {
		return err
	}

	r := fmt.Sprintf("127.0.0.1:%d", port)
	fmt.Printf(`
sandbox-router demo is running (Ctrl-C stops it).

  # by header, as existing SDKs send it
  curl -s -H 'X-Sandbox-ID: alpha' http://%[1]s/hello
  curl -s -H 'X-Sandbox-ID: beta' -H 'X-Sandbox-Namespace: team-a' http://%[1]s/hello
  # by host name (*.localhost resolves to 127.0.0.1)
  curl -s http://8888-alpha.default.sandbox.localhost:%[2]d/hello
  curl -s --resolve beta.team-a.sandbox.localhost:%[2]d:127.0.0.1 http://beta.team-a.sandbox.localhost:%[2]d/hello
  # streaming (server-sent events, flushed as they arrive)
  curl -sN -H 'X-Sandbox-ID: alpha' http://%[1]s/events
  # a suspended sandbox answers its honest state (the activator will wake it)
  curl -s -H 'X-Sandbox-ID: sleepy' http://%[1]s/
  # unknown sandbox and invalid key
  curl -s -H 'X-Sandbox-ID: nobody' http://%[1]s/
  curl -s -H 'X-Sandbox-ID: Not_Valid' http://%[1]s/
  # health, readiness and metrics
  curl -s http://%[1]s/healthz
  curl -s http://127.0.0.1:%[3]d/metrics | grep sandbox_router_requests_total
  # access log
  tail -f %[4]s
`, r, port, admin, filepath.Join(dir, "access.log"))

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return fmt.Errorf("router exited: %v", err)
	}
}

func sandboxHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for i := 1; i <= 5; i++ {
			fmt.Fprintf(w, "data: %s event %d\n\n", name, i)
			f.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		fmt.Fprintf(w, "{\"sandbox\":%q,\"method\":%q,\"path\":%q,\"host\":%q,\"x_forwarded_for\":%q,\"body_bytes\":%d}\n",
			name, r.Method, r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"), len(body))
	})
	return mux
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("router not ready at %s", url)
}
