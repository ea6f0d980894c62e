package mcp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// Every argument a model sends is checked here before it reaches the
// cluster or a sandbox; each error says what would have been right.

// sandboxRef names one sandbox.
type sandboxRef struct {
	Namespace string `json:"namespace" jsonschema:"the sandbox's namespace"`
	Name      string `json:"name" jsonschema:"the sandbox's name"`
}

func (s *sandboxRef) key() (resolver.Key, error) {
	if !resolver.IsDNSLabel(s.Namespace) {
		return resolver.Key{}, fmt.Errorf("namespace %q is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)", clip(s.Namespace))
	}
	if !resolver.IsDNSLabel(s.Name) {
		return resolver.Key{}, fmt.Errorf("name %q is not a sandbox name (lower-case letters, digits and '-', at most 63)", clip(s.Name))
	}
	return resolver.Key{Namespace: s.Namespace, Name: s.Name}, nil
}

// maxPathBytes bounds a file path (Linux's PATH_MAX).
const maxPathBytes = 4096

// runtimePath checks a path of the sandbox's runtime API and returns it
// as the one escaped path segment the runtime takes (/download/%2Fa%2Fb,
// as the upstream SDKs send it). It refuses what no honest path holds:
// control characters, invalid UTF-8, a ".." segment (the runtime refuses
// paths that leave its base directory; a model has no reason to try),
// and empty or overlong paths.
func runtimePath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("path is empty: give a file path such as /app/main.py or main.py")
	case len(p) > maxPathBytes:
		return "", fmt.Errorf("path is %d bytes long, more than %d", len(p), maxPathBytes)
	case !utf8.ValidString(p):
		return "", errors.New("path is not valid UTF-8")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\\' {
			return "", fmt.Errorf("path %q holds a control character or a backslash", clip(p))
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("path %q holds a '..' segment: name the file directly", clip(p))
		}
	}
	if p == "." {
		return "%2E", nil // a lone dot segment, which proxies normalise away
	}
	return url.PathEscape(p), nil
}

// maxCommandBytes bounds a command (the runtime's own bound).
const maxCommandBytes = 64 << 10

func checkCommand(cmd string) error {
	switch {
	case strings.TrimSpace(cmd) == "":
		return errors.New("command is empty")
	case len(cmd) > maxCommandBytes:
		return fmt.Errorf("command is %d bytes long, more than %d: write a script with write_file and run it", len(cmd), maxCommandBytes)
	case !utf8.ValidString(cmd):
		return errors.New("command is not valid UTF-8")
	case strings.ContainsRune(cmd, 0):
		return errors.New("command holds a NUL byte")
	}
	return nil
}

// checkTemplate checks a SandboxTemplate's name (a DNS subdomain).
func checkTemplate(t string) error {
	if t == "" || len(t) > 253 {
		return errors.New("template must be a SandboxTemplate name of 1-253 characters")
	}
	for part := range strings.SplitSeq(t, ".") {
		if !resolver.IsDNSLabel(part) {
			return fmt.Errorf("template %q is not a Kubernetes object name (lower-case letters, digits, '-' and '.')", clip(t))
		}
	}
	return nil
}

// maxSelectorBytes bounds a label selector.
const maxSelectorBytes = 1024

func checkSelector(s string) error {
	if len(s) > maxSelectorBytes {
		return fmt.Errorf("label_selector is longer than %d bytes", maxSelectorBytes)
	}
	if _, err := labels.Parse(s); err != nil {
		return fmt.Errorf("label_selector: %v", err)
	}
	return nil
}

func checkPort(p int) (uint16, error) {
	if p == 0 {
		return 8888, nil
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d is not 1-65535", p)
	}
	return uint16(p), nil
}

// seconds reads an optional duration in seconds: def when 0, at most max.
func seconds(name string, v int, def, max time.Duration) (time.Duration, error) {
	if v == 0 {
		return def, nil
	}
	if v < 0 || v > int(max/time.Second) { // before multiplying: no overflow
		return 0, fmt.Errorf("%s must be 1-%d seconds", name, int(max/time.Second))
	}
	return time.Duration(v) * time.Second, nil
}

// size reads an optional byte count: def when 0, at most max.
func size(name string, v, def, max int) (int, error) {
	if v == 0 {
		return def, nil
	}
	if v < 0 || v > max {
		return 0, fmt.Errorf("%s must be 1-%d", name, max)
	}
	return v, nil
}

// clip shortens what is quoted back in an error.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
