package tffi

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		Namespace: "team-a", Sandbox: "sb1", Router: "http://127.0.0.1:8080",
		Path: "/", N: 3, Modes: []string{ModeProbe, ModeReady}, Timeout: time.Minute,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // a part of the error; "" for none
	}{
		{"valid", func(*Config) {}, ""},
		{"host template", func(c *Config) { c.Host = "{port}-{sandbox}.{namespace}.example.com"; c.Port = 8888 }, ""},
		{"path routing", func(c *Config) { c.Path = "/sandboxes/{namespace}/{sandbox}/{port}/?q=1"; c.Port = 9000 }, ""},
		{"metrics with a path", func(c *Config) { c.Metrics = "http://127.0.0.1:9090/metrics" }, ""},
		{"router with a trailing slash", func(c *Config) { c.Router = "https://r.example.com/" }, ""},
		{"one mode", func(c *Config) { c.Modes = []string{ModeReady} }, ""},
		{"no sandbox", func(c *Config) { c.Sandbox = "" }, "sandbox is required"},
		{"bad sandbox", func(c *Config) { c.Sandbox = "Not_A_Label" }, `sandbox "Not_A_Label"`},
		{"bad namespace", func(c *Config) { c.Namespace = "a.b" }, `namespace "a.b"`},
		{"no router", func(c *Config) { c.Router = "" }, "router is required"},
		{"router scheme", func(c *Config) { c.Router = "ftp://r" }, "not an http or https URL"},
		{"router without host", func(c *Config) { c.Router = "http://" }, "has no host"},
		{"router with a path", func(c *Config) { c.Router = "http://r/x" }, "has a path"},
		{"router with a query", func(c *Config) { c.Router = "http://r/?a=b" }, "has a query"},
		{"metrics scheme", func(c *Config) { c.Metrics = "127.0.0.1:9090" }, "metrics:"},
		{"port range", func(c *Config) { c.Port = 70000 }, "port 70000"},
		{"unknown placeholder", func(c *Config) { c.Host = "{id}.example.com" }, "unknown placeholder"},
		{"port placeholder without port", func(c *Config) { c.Host = "{port}-{sandbox}.example.com" }, "no port is given"},
		{"host with a path", func(c *Config) { c.Host = "a.example.com/x" }, "not a host name"},
		{"relative path", func(c *Config) { c.Path = "x" }, "does not start with /"},
		{"no wake-up", func(c *Config) { c.N = 0 }, "at least one wake-up"},
		{"no mode", func(c *Config) { c.Modes = nil }, "no mode"},
		{"unknown mode", func(c *Config) { c.Modes = []string{"fast"} }, `mode "fast"`},
		{"mode twice", func(c *Config) { c.Modes = []string{ModeProbe, ModeProbe} }, "given twice"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestValidateSaysEverything(t *testing.T) {
	c := Config{Router: "ftp://x", N: -1, Timeout: -1}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"namespace is required", "sandbox is required", "router:", "n is -1", "no mode", "timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestNewRequest(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*Config)
		url, host string
		headers   map[string]string // "" value: absent
	}{
		{
			name: "headers", change: func(*Config) {},
			url: "http://127.0.0.1:8080/", host: "127.0.0.1:8080",
			headers: map[string]string{"X-Sandbox-Id": "sb1", "X-Sandbox-Namespace": "team-a", "X-Sandbox-Port": ""},
		},
		{
			name: "headers with port", change: func(c *Config) { c.Port = 9000; c.Path = "/run?x=1" },
			url: "http://127.0.0.1:8080/run?x=1", host: "127.0.0.1:8080",
			headers: map[string]string{"X-Sandbox-Id": "sb1", "X-Sandbox-Port": "9000"},
		},
		{
			name: "host", change: func(c *Config) {
				c.Router = "https://r.example.com/"
				c.Host = "{port}-{sandbox}.{namespace}.example.com"
				c.Port = 8888
				c.Headers = http.Header{"Authorization": {"Bearer t"}}
			},
			url: "https://r.example.com/", host: "8888-sb1.team-a.example.com",
			headers: map[string]string{"X-Sandbox-Id": "", "X-Sandbox-Namespace": "", "Authorization": "Bearer t"},
		},
		{
			name: "path routing", change: func(c *Config) { c.Path = "/sandboxes/{namespace}/{sandbox}/{port}/"; c.Port = 8888 },
			url: "http://127.0.0.1:8080/sandboxes/team-a/sb1/8888/", host: "127.0.0.1:8080",
			headers: map[string]string{"X-Sandbox-Id": "sb1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			req, err := c.newRequest()
			if err != nil {
				t.Fatal(err)
			}
			if req.URL.String() != tt.url {
				t.Errorf("URL %s, want %s", req.URL, tt.url)
			}
			host := req.Host
			if host == "" {
				host = req.URL.Host
			}
			if host != tt.host {
				t.Errorf("host %s, want %s", host, tt.host)
			}
			for k, v := range tt.headers {
				if got := req.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9090":           "http://127.0.0.1:9090/metrics",
		"http://127.0.0.1:9090/":          "http://127.0.0.1:9090/metrics",
		"https://a.example.com/x/metrics": "https://a.example.com/x/metrics",
	} {
		c := Config{Metrics: in}
		if got := c.metricsURL(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
