package tffi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sandbox-router/sandbox-router/resolver/kube"
)

// The modes: what releases the requests held for the sandbox, set with
// the router's release-on annotation on the Sandbox.
const (
	// ModeProbe: the router's first successful run of the pod's own
	// readiness probe (the fast path).
	ModeProbe = "probe"
	// ModeReady: Kubernetes' Ready condition.
	ModeReady = "ready"
)

// ReleaseAnnotation is the Sandbox annotation each mode sets.
const ReleaseAnnotation = kube.ReleaseAnnotation

// Config is what to measure and how to reach it.
type Config struct {
	// Kubeconfig and Context select the cluster; empty means the usual
	// loading rules ($KUBECONFIG, ~/.kube/config) and their current
	// context, or the in-cluster configuration.
	Kubeconfig, Context string
	// Namespace and Sandbox name the Sandbox. It is suspended and woken
	// N times per mode.
	Namespace, Sandbox string
	// Router is the router's base URL (http[s]://host[:port]).
	Router string
	// Host, when set, is the Host header that names the sandbox: a
	// template of {sandbox}, {namespace} and {port}, such as
	// "{port}-{sandbox}.{namespace}.sandboxes.example.com". Empty: the
	// X-Sandbox-ID and X-Sandbox-Namespace headers (and X-Sandbox-Port
	// when Port is set) name it.
	Host string
	// Port is the sandbox's port; 0 leaves it to the router (8888).
	Port int
	// Path is the request's path (and query), a template like Host, so
	// that path routing works too: "/sandboxes/{namespace}/{sandbox}/{port}/".
	Path string
	// Headers are sent with every request (an Authorization header, for
	// a router that checks who calls).
	Headers http.Header
	// N is the number of wake-ups per mode.
	N int
	// Modes are measured in this order.
	Modes []string
	// Metrics, when set, is the router's admin URL (its /metrics path is
	// added when the URL has no path): the wake phase histograms are read
	// before and after each mode. With several router replicas, this one
	// replica's.
	Metrics string
	// Timeout bounds each wait: the pod gone after a suspension, the
	// response, the new pod Ready.
	Timeout time.Duration
	// Insecure skips the verification of the router's certificates.
	Insecure bool
	// Progress, when set, receives one line per wake-up.
	Progress func(format string, args ...any)
}

// Validate checks c and says everything wrong with it.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, f := range []struct{ name, v string }{{"namespace", c.Namespace}, {"sandbox", c.Sandbox}} {
		if f.v == "" {
			bad("%s is required", f.name)
		} else if msgs := validation.IsDNS1123Label(f.v); len(msgs) > 0 {
			bad("%s %q: %s", f.name, f.v, strings.Join(msgs, "; "))
		}
	}
	if c.Router == "" {
		bad("router is required")
	} else if err := checkBaseURL(c.Router, false); err != nil {
		bad("router: %v", err)
	}
	if c.Metrics != "" {
		if err := checkBaseURL(c.Metrics, true); err != nil {
			bad("metrics: %v", err)
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("port %d is not within 0 and 65535", c.Port)
	}
	if c.Host != "" {
		host, err := c.expand(c.Host)
		switch {
		case err != nil:
			bad("host: %v", err)
		case strings.ContainsAny(host, " /?#@"):
			bad("host %q is not a host name", host)
		}
	}
	if !strings.HasPrefix(c.Path, "/") {
		bad("path %q does not start with /", c.Path)
	} else if p, err := c.expand(c.Path); err != nil {
		bad("path: %v", err)
	} else if _, err := url.ParseRequestURI(p); err != nil {
		bad("path %q: %v", p, err)
	}
	if c.N < 1 {
		bad("n is %d: at least one wake-up per mode", c.N)
	}
	if len(c.Modes) == 0 {
		bad("no mode: want %s, %s or both", ModeProbe, ModeReady)
	}
	for i, m := range c.Modes {
		switch {
		case m != ModeProbe && m != ModeReady:
			bad("mode %q: want %s or %s", m, ModeProbe, ModeReady)
		case slices.Contains(c.Modes[:i], m):
			bad("mode %s given twice", m)
		}
	}
	if c.Timeout <= 0 {
		bad("timeout %v is not positive", c.Timeout)
	}
	return errors.Join(errs...)
}

// checkBaseURL checks an http(s) URL without query or fragment; a path is
// allowed only when withPath.
func checkBaseURL(s string, withPath bool) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q has a query, a fragment or user information", s)
	case !withPath && u.Path != "" && u.Path != "/":
		return fmt.Errorf("%q has a path (give it with -path)", s)
	}
	return nil
}

// expand fills in a Host or Path template.
func (c *Config) expand(tmpl string) (string, error) {
	if strings.Contains(tmpl, "{port}") && c.Port == 0 {
		return "", fmt.Errorf("%q names {port}, but no port is given", tmpl)
	}
	s := strings.NewReplacer("{sandbox}", c.Sandbox, "{namespace}", c.Namespace, "{port}", strconv.Itoa(c.Port)).Replace(tmpl)
	if i := strings.IndexAny(s, "{}"); i >= 0 {
		return "", fmt.Errorf("%q: unknown placeholder (want {sandbox}, {namespace} or {port})", tmpl)
	}
	return s, nil
}

// metricsURL is Metrics with /metrics when it has no path.
func (c *Config) metricsURL() string {
	u, _ := url.Parse(c.Metrics) // checked by Validate
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	return u.String()
}

// newRequest is the one request of a wake-up.
func (c *Config) newRequest() (*http.Request, error) {
	path, err := c.expand(c.Path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(c.Router, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.Headers {
		req.Header[k] = slices.Clone(vs)
	}
	if c.Host != "" {
		if req.Host, err = c.expand(c.Host); err != nil {
			return nil, err
		}
		return req, nil
	}
	req.Header.Set("X-Sandbox-ID", c.Sandbox)
	req.Header.Set("X-Sandbox-Namespace", c.Namespace)
	if c.Port != 0 {
		req.Header.Set("X-Sandbox-Port", strconv.Itoa(c.Port))
	}
	return req, nil
}
