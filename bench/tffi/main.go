package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sandbox-router/sandbox-router/bench/tffi/tffi"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tffi: %v\n", err)
		os.Exit(2)
	}
	cfg.Progress = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	report, err := tffi.Run(ctx, cfg)
	if report != nil && len(report.Modes) > 0 {
		fmt.Print(report.Markdown())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tffi: %v\n", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line into a checked Config.
func parseFlags(args []string, stderr io.Writer) (tffi.Config, error) {
	fs := flag.NewFlagSet("tffi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tffi -sandbox NAME -router URL [flags]\n\nMeasures the time to first instruction of a suspended sandbox through sandbox-router, with (probe) and without (ready) the router's fast path. Flags:")
		fs.PrintDefaults()
	}
	cfg := tffi.Config{Headers: http.Header{}}
	var modes string
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty: $KUBECONFIG, ~/.kube/config, or in-cluster")
	fs.StringVar(&cfg.Context, "context", "", "kubeconfig context; empty: the current one")
	fs.StringVar(&cfg.Namespace, "namespace", "default", "the Sandbox's namespace")
	fs.StringVar(&cfg.Sandbox, "sandbox", "", "the Sandbox to suspend and wake (required; it is suspended -n times per mode)")
	fs.StringVar(&cfg.Router, "router", "", "the router's base URL, http[s]://host[:port] (required)")
	fs.StringVar(&cfg.Host, "host", "", "Host header naming the sandbox, a template of {sandbox}, {namespace} and {port} (e.g. '{sandbox}.{namespace}.sandboxes.example.com'); empty: the X-Sandbox-* headers")
	fs.IntVar(&cfg.Port, "port", 0, "the sandbox's port (X-Sandbox-Port, {port}); 0: the router's default, 8888")
	fs.StringVar(&cfg.Path, "path", "/", "request path and query, a template like -host (path routing: '/sandboxes/{namespace}/{sandbox}/{port}/')")
	fs.Func("H", "a request header, 'Name: value' (repeatable; e.g. 'Authorization: Bearer TOKEN')", func(s string) error {
		name, value, ok := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("%q is not 'Name: value'", s)
		}
		cfg.Headers.Add(name, strings.TrimSpace(value))
		return nil
	})
	fs.IntVar(&cfg.N, "n", 20, "wake-ups per mode")
	fs.StringVar(&modes, "modes", tffi.ModeProbe+","+tffi.ModeReady, "modes in order, comma-separated: probe (the router's fast path) and/or ready (wait for Kubernetes' Ready)")
	fs.StringVar(&cfg.Metrics, "metrics", "", "the router's admin URL (e.g. http://127.0.0.1:9090; /metrics when no path): print its wake-up phases per mode")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "bound of each wait: the pod gone, the response, the new pod Ready")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the router's TLS certificate")
	if err := fs.Parse(args); err != nil {
		return tffi.Config{}, err
	}
	if fs.NArg() > 0 {
		return tffi.Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for m := range strings.SplitSeq(modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Modes = append(cfg.Modes, m)
		}
	}
	if err := cfg.Validate(); err != nil {
		return tffi.Config{}, err
	}
	return cfg, nil
}
