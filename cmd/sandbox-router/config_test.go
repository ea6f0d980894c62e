package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, `
routes: /from/file.yaml
idle-timeout: 30s
base-domain: [file.example.com, other.example.com]
listen-admin: 127.0.0.1:7000
`)
	env := map[string]string{
		"SANDBOX_ROUTER_CONFIG":       file,
		"SANDBOX_ROUTER_IDLE_TIMEOUT": "40s",
		"SANDBOX_ROUTER_LISTEN_ADMIN": "127.0.0.1:7001",
		"SANDBOX_ROUTER_DIAL_RETRIES": "5",
		"SANDBOX_ROUTER_LOG_LEVEL":    "debug",
	}
	c, err := loadConfig([]string{"--idle-timeout=50s", "--log-level", "warn"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats file and env", c.IdleTimeout, 50 * time.Second},
		{"flag beats env", c.LogLevel, "warn"},
		{"file beats env", c.ListenAdmin, "127.0.0.1:7000"},
		{"env beats default", c.DialRetries, 5},
		{"file list", c.BaseDomains, []string{"file.example.com", "other.example.com"}},
		{"default", c.ListenHTTP, ":8080"},
		{"file from env", c.ConfigFile, file},
		{"routes from file", c.Routes, "/from/file.yaml"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestConfigListFlagReplacesLowerLayers(t *testing.T) {
	file := writeFile(t, "routes: r.yaml\nbase-domain: [file.example.com]\n")
	c, err := loadConfig([]string{"--config", file, "--base-domain", "a.test,b.test", "--base-domain", "c.test"}, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.test", "b.test", "c.test"}; !reflect.DeepEqual(c.BaseDomains, want) {
		t.Fatalf("base domains = %v, want %v", c.BaseDomains, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		file    string
		env     map[string]string
		wantErr string
	}{
		{name: "unknown file key", file: "routes: r.yaml\nlisten-htp: :80\n", wantErr: `unknown key "listen-htp"`},
		{name: "bad file value", file: "routes: r.yaml\nidle-timeout: soon\n", wantErr: `invalid value "soon" for idle-timeout`},
		{name: "nested file value", file: "routes: r.yaml\nidle-timeout: {a: b}\n", wantErr: "expected a value or a list"},
		{name: "bad env value", args: []string{"--routes", "r"}, env: map[string]string{"SANDBOX_ROUTER_DIAL_RETRIES": "many"}, wantErr: "SANDBOX_ROUTER_DIAL_RETRIES"},
		{name: "bad flag", args: []string{"--routes", "r", "--max-header-bytes", "x"}, wantErr: "invalid value"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
		{name: "routes with kubeconfig", args: []string{"--routes", "r", "--kubeconfig", "k"}, wantErr: "cannot be combined"},
		{name: "bad namespace", args: []string{"--namespaces", "ok,Not_A-Name"}, wantErr: `"Not_A-Name" is not a namespace`},
		{name: "bad sandbox version", args: []string{"--sandbox-versions", "v2"}, wantErr: `"v2" is not v1beta1`},
		{name: "tls half", args: []string{"--routes", "r", "--tls-cert", "c"}, wantErr: "given together"},
		{name: "https without cert", args: []string{"--routes", "r", "--listen-https", ":8443"}, wantErr: "listen-https needs"},
		{name: "bad listen", args: []string{"--routes", "r", "--listen-http", "nope"}, wantErr: "not host:port"},
		{name: "bad pod ip mode", args: []string{"--routes", "r", "--pod-ip-header", "yes"}, wantErr: "pod-ip-header"},
		{name: "direct without cidrs", args: []string{"--routes", "r", "--pod-ip-header", "direct"}, wantErr: "needs pod-cidrs"},
		{name: "bad pod cidr", args: []string{"--routes", "r", "--pod-cidrs", "10.0.0.0"}, wantErr: "pod-cidrs"},
		{name: "bad cidr", args: []string{"--routes", "r", "--trusted-proxies", "10.0.0.0/33"}, wantErr: "trusted-proxies"},
		{name: "mcp with allow-all", args: []string{"--mcp-host", "mcp.example.com"}, wantErr: "mcp-host needs an authz-mode that authenticates"},
		{name: "mcp host without a domain", args: []string{"--authz-mode", "kubernetes", "--mcp-host", "sandbox-router"}, wantErr: "is not a host name with a domain"},
		{name: "mcp host under a base domain", args: []string{"--authz-mode", "kubernetes", "--base-domain", "sb.example.com", "--mcp-host", "a.b.sb.example.com"}, wantErr: "or a sandbox's host under it"},
		{name: "mcp host is the base domain", args: []string{"--authz-mode", "kubernetes", "--base-domain", "sb.example.com", "--mcp-host", "sb.example.com"}, wantErr: "or a sandbox's host under it"},
		{name: "mcp with routes", args: []string{"--routes", "r", "--authz-mode", "scoped-token", "--authz-scoped-token-secret-file", "s", "--mcp-host", "mcp.example.com"}, wantErr: "mcp-host needs the Kubernetes resolver"},
		{name: "mcp public url without host", args: []string{"--mcp-public-url", "https://mcp.example.com"}, wantErr: "need mcp-host"},
		{name: "mcp bad public url", args: []string{"--authz-mode", "kubernetes", "--mcp-host", "mcp.example.com", "--mcp-public-url", "mcp.example.com/x"}, wantErr: "mcp-public-url"},
		{name: "xds with routes", args: []string{"--routes", "r", "--xds-listen", ":18000", "--xds-router-endpoints", "10.0.0.1:8080"}, wantErr: "xds-listen needs the Kubernetes resolver"},
		{name: "xds without routers", args: []string{"--xds-listen", ":18000"}, wantErr: "exactly one of xds-router-endpoints"},
		{name: "xds bad router endpoint", args: []string{"--xds-listen", ":18000", "--xds-router-endpoints", "router:8080"}, wantErr: `"router:8080" is not ip:port`},
		{name: "xds bad service", args: []string{"--xds-listen", ":18000", "--xds-router-service", "router"}, wantErr: "not namespace/name"},
		{name: "xds client ca without cert", args: []string{"--xds-listen", ":18000", "--xds-router-service", "a/b", "--xds-tls-client-ca-file", "ca.pem"}, wantErr: "xds-tls-client-ca-file needs"},
		{name: "negative body", args: []string{"--routes", "r", "--max-request-body-bytes", "-1"}, wantErr: "must not be negative"},
		{name: "zero timeout", args: []string{"--routes", "r", "--read-header-timeout", "0s"}, wantErr: "read-header-timeout must be positive"},
		{name: "bad log level", args: []string{"--routes", "r", "--log-level", "loud"}, wantErr: "log-level"},
		{name: "missing file", args: []string{"--config", "/does/not/exist.yaml"}, wantErr: "no such file"},
		{name: "stray argument", args: []string{"--routes", "r", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "zero hold timeout", args: []string{"--hold-timeout", "0s"}, wantErr: "hold-timeout, activity-tick and leader-retry-period must be positive"},
		{name: "zero held bound", args: []string{"--max-held-total", "0"}, wantErr: "max-held-per-sandbox, max-held-total and release-concurrency must be at least 1"},
		{name: "negative idle timeout", args: []string{"--sandbox-idle-timeout", "-1s"}, wantErr: "sandbox-idle-timeout must not be negative"},
		{name: "namespace timeout without =", args: []string{"--namespace-idle-timeouts", "team-a"}, wantErr: `"team-a" is not namespace=duration`},
		{name: "namespace timeout bad duration", args: []string{"--namespace-idle-timeouts", "team-a=soon"}, wantErr: "the duration must be like 10m"},
		{name: "namespace timeout twice", args: []string{"--namespace-idle-timeouts", "a=1m,a=2m"}, wantErr: "namespace a given twice"},
		{name: "bad lease namespace", args: []string{"--leader-election-namespace", "Bad_NS"}, wantErr: "leader-election-namespace"},
		{name: "renew not below lease", args: []string{"--leader-lease-duration", "10s", "--leader-renew-deadline", "10s"}, wantErr: "leader election needs"},
		{name: "retry not below renew", args: []string{"--leader-renew-deadline", "2s", "--leader-retry-period", "2s"}, wantErr: "leader election needs"},
		{name: "zero activator qps", args: []string{"--activator-qps", "0"}, wantErr: "activator-qps must be positive"},
		{name: "zero connection cap", args: []string{"--routes", "r", "--upstream-max-conns-per-endpoint", "0"}, wantErr: "upstream-max-conns-per-endpoint"},
		{name: "zero waiters", args: []string{"--routes", "r", "--upstream-max-conn-waiters-per-endpoint", "0"}, wantErr: "upstream-max-conn-waiters-per-endpoint"},
		{name: "zero connection wait", args: []string{"--routes", "r", "--upstream-conn-wait-timeout", "0s"}, wantErr: "upstream-conn-wait-timeout must be positive"},
		{name: "bad mtls mode", args: []string{"--routes", "r", "--mtls-mode", "on"}, wantErr: "mtls-mode"},
		{name: "mtls without ca", args: []string{"--routes", "r", "--listen-https", ":8443", "--tls-cert", "c", "--tls-key", "k", "--mtls-mode", "required"}, wantErr: "needs listen-https and tls-client-ca-file"},
		{name: "client ca without mtls", args: []string{"--routes", "r", "--tls-client-ca-file", "ca.pem"}, wantErr: "tls-client-ca-file needs mtls-mode"},
		{name: "bad path prefix", args: []string{"--routes", "r", "--path-routing-prefix", "/sandboxes/"}, wantErr: "path-routing-prefix"},
		{name: "cookie with allow-all", args: []string{"--routes", "r", "--authz-cookie-name", "s"}, wantErr: "authz-cookie-name needs an authz-mode"},
		{name: "cookie without host or path routing", args: []string{"--authz-mode", "kubernetes", "--authz-cookie-name", "s"}, wantErr: "needs base-domain or path-routing-prefix"},
		{name: "bad cookie name", args: []string{"--authz-mode", "kubernetes", "--base-domain", "sb.test", "--authz-cookie-name", "__Host-s"}, wantErr: "is not a cookie name"},
		{name: "bad samesite", args: []string{"--authz-mode", "kubernetes", "--base-domain", "sb.test", "--authz-cookie-name", "s", "--authz-cookie-samesite", "loose"}, wantErr: "authz-cookie-samesite"},
		{name: "samesite none over http", args: []string{"--authz-mode", "kubernetes", "--base-domain", "sb.test", "--authz-cookie-name", "s", "--authz-cookie-samesite", "none"}, wantErr: "needs HTTPS"},
		{name: "bad allowed origin", args: []string{"--authz-mode", "kubernetes", "--base-domain", "sb.test", "--authz-cookie-name", "s", "--authz-cookie-allowed-origins", "https://ide.example/x"}, wantErr: "authz-cookie-allowed-origins"},
		{name: "mint with allow-all", args: []string{"--routes", "r", "--authz-mint-signing-key", "k1.key"}, wantErr: "authz-mint-signing-key needs"},
		{name: "mint without scoped tokens", args: []string{"--authz-mode", "kubernetes", "--authz-mint-signing-key", "k1.key"}, wantErr: "authz-mint-signing-key needs"},
		{name: "mint without kubernetes", args: []string{"--routes", "r", "--authz-mode", "scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "k1.key"}, wantErr: "authz-mint-signing-key needs"},
		{name: "mint default above max", args: []string{"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "k1.key", "--authz-mint-default-ttl", "2h"}, wantErr: "authz-mint-default-ttl"},
		{name: "mint ttl under the minimum", args: []string{"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "k1.key", "--authz-mint-default-ttl", "1s", "--authz-mint-max-ttl", "5s"}, wantErr: "authz-mint-default-ttl must be at least"},
		{name: "mint key id with a path", args: []string{"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "k1.key", "--authz-mint-key-id", "../other/k9"}, wantErr: "authz-mint-key-id"},
		{name: "mint key file with a dot", args: []string{"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "keys/.k1.key"}, wantErr: "authz-mint-key-id"},
		{name: "path prefix over the mint path", args: []string{"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "k1.key", "--path-routing-prefix", "/sandbox-router"}, wantErr: "covers the minting endpoint"},
		{name: "bad mint public url", args: []string{"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", "keys", "--authz-mint-signing-key", "k1.key", "--authz-mint-public-url", "https://sb.example.com/x"}, wantErr: "authz-mint-public-url"},
		{name: "mint public url without a key", args: []string{"--authz-mode", "kubernetes", "--authz-mint-public-url", "https://sb.example.com"}, wantErr: "need authz-mint-signing-key"},
		{name: "dashboard with allow-all", args: []string{"--listen-dashboard", ":8090"}, wantErr: "set dashboard-anonymous to mean that"},
		{name: "dashboard with routes", args: []string{"--routes", "r", "--listen-dashboard", ":8090", "--dashboard-anonymous"}, wantErr: "listen-dashboard needs the Kubernetes resolver"},
		{name: "dashboard bad listen", args: []string{"--authz-mode", "kubernetes", "--listen-dashboard", "8090"}, wantErr: "listen-dashboard"},
		{name: "dashboard anonymous without listener", args: []string{"--dashboard-anonymous"}, wantErr: "need listen-dashboard"},
		{name: "dashboard secure cookies without sign-in", args: []string{"--listen-dashboard", ":8090", "--dashboard-anonymous", "--dashboard-secure-cookies"}, wantErr: "which dashboard-anonymous turns off"},
		{name: "zero client timeout cap", args: []string{"--routes", "r", "--max-client-timeout", "0s"}, wantErr: "max-client-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := loadConfig(args, envOf(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigUpstreamDefaults(t *testing.T) {
	c, err := loadConfig([]string{"--routes", "r"}, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.UpstreamMaxConns != 256 || c.UpstreamMaxConnWaiters != 1024 || c.UpstreamConnWaitTimeout != 5*time.Second ||
		c.UpstreamMaxIdle != 256 || c.MaxClientTimeout != time.Hour {
		t.Fatalf("defaults: conns %d, waiters %d, wait %v, idle %d, client timeout cap %v",
			c.UpstreamMaxConns, c.UpstreamMaxConnWaiters, c.UpstreamConnWaitTimeout, c.UpstreamMaxIdle, c.MaxClientTimeout)
	}
}

func TestDialRetries(t *testing.T) {
	// router.Options.DialRetries takes 0 for its default (3), so
	// --dial-retries=0 must reach it as "none".
	for flag, want := range map[int]int{0: -1, 1: 1, 3: 3, 10: 10} {
		if got := dialRetries(flag); got != want {
			t.Errorf("--dial-retries=%d gives DialRetries %d, want %d", flag, got, want)
		}
	}
	// A lower connection cap is taken with the default idle limit (the
	// router clamps idle connections to the cap).
	if _, err := loadConfig([]string{"--routes", "r", "--upstream-max-conns-per-endpoint", "8"}, envOf(nil), io.Discard); err != nil {
		t.Fatalf("a connection cap below the idle default: %v", err)
	}
}

func TestConfigActivatorDefaults(t *testing.T) {
	c, err := loadConfig([]string{"--namespace-idle-timeouts", "team-a=10m,keep=0"}, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Activator || c.HoldTimeout != 60*time.Second || c.SandboxIdleTimeout != 0 || !c.LeaderElection {
		t.Fatalf("defaults: activator %v, hold %v, idle %v, election %v", c.Activator, c.HoldTimeout, c.SandboxIdleTimeout, c.LeaderElection)
	}
	got, err := parseNamespaceTimeouts(c.NamespaceIdleTimeouts)
	if err != nil || got["team-a"] != 10*time.Minute || got["keep"] != 0 || len(got) != 2 {
		t.Fatalf("namespace timeouts = %v, %v", got, err)
	}
}

// FuzzNamespaceTimeouts: any input is either refused or gives valid
// namespaces with non-negative timeouts.
func FuzzNamespaceTimeouts(f *testing.F) {
	for _, s := range []string{"team-a=10m", "a=0,b=1h", "a", "=1m", "a=-1s", "A=1m", "a=1m,a=2m", "a=1m=2m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseNamespaceTimeouts(strings.Split(s, ","))
		if err != nil {
			return
		}
		for ns, d := range got {
			if !resolver.IsDNSLabel(ns) || d < 0 {
				t.Fatalf("%q accepted as %q=%v", s, ns, d)
			}
		}
	})
}

func TestDeriveCaps(t *testing.T) {
	cases := []struct {
		name                      string
		client, tunnels, upstream int
		reserve                   int
		soft                      uint64
		want                      connectionCaps
		wantErr                   bool
	}{
		{name: "derived", reserve: 256, soft: 20000, want: connectionCaps{client: 9872, tunnels: 9872, upstream: 9872}},
		{name: "small limit", reserve: 256, soft: 512, want: connectionCaps{client: 128, tunnels: 128, upstream: 128}},
		{name: "client set", client: 1000, reserve: 256, soft: 20000, want: connectionCaps{client: 1000, tunnels: 1000, upstream: 18744}},
		{name: "upstream set", upstream: 744, reserve: 256, soft: 20000, want: connectionCaps{client: 19000, tunnels: 19000, upstream: 744}},
		{name: "tunnels set", tunnels: 10, reserve: 256, soft: 512, want: connectionCaps{client: 128, tunnels: 10, upstream: 128}},
		{name: "no rlimit", client: 5, soft: 0, want: connectionCaps{client: 5, tunnels: 5}},
		{name: "over the limit", client: 20000, upstream: 1, reserve: 256, soft: 20000, wantErr: true},
		{name: "tunnels over clients", client: 10, tunnels: 11, reserve: 256, soft: 20000, wantErr: true},
		{name: "reserve eats all", reserve: 600, soft: 512, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config{MaxClientConns: tc.client, MaxTunnels: tc.tunnels, MaxUpstreamConns: tc.upstream, DescriptorReserve: tc.reserve}
			got, err := deriveCaps(cfg, tc.soft)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("deriveCaps = %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("deriveCaps = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestConfigDashboard(t *testing.T) {
	for _, args := range [][]string{
		{"--authz-mode", "kubernetes", "--listen-dashboard", "127.0.0.1:8090"},
		{"--listen-dashboard", ":8090", "--dashboard-anonymous"},
		{"--authz-mode", "tokenreview", "--listen-dashboard", ":8090", "--dashboard-router-url", "https://sandboxes.example.com", "--dashboard-extensions=false"},
	} {
		c, err := loadConfig(args, envOf(nil), io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if c.Dashboard.Listen == "" {
			t.Fatalf("%v: no dashboard listener", args)
		}
	}
}
