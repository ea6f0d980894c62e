package dashboard

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// labelReq is one term of a label selector: the key with the value
// (equal, not equal), or the key present or absent.
type labelReq struct {
	key, value string
	op         labelOp
}

type labelOp uint8

const (
	labelEqual labelOp = iota
	labelNotEqual
	labelExists
	labelAbsent
)

// Bounds of a selector: a few terms of Kubernetes-sized keys and values.
const (
	maxLabelTerms    = 8
	maxLabelKey      = 317 // a prefix of 253, a slash, a name of 63
	maxLabelValue    = 63
	maxSelectorBytes = 1024
)

// parseLabelSelector reads the equality subset of Kubernetes' selector
// syntax: comma-separated terms "key=value" (or "=="), "key!=value",
// "key" (present) and "!key" (absent), spaces around them ignored. Keys
// and values are checked for the characters Kubernetes allows, so a
// selector never carries anything but plain text.
func parseLabelSelector(s string) ([]labelReq, error) {
	if len(s) > maxSelectorBytes {
		return nil, fmt.Errorf("label selector is longer than %d bytes", maxSelectorBytes)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []labelReq
	for term := range strings.SplitSeq(s, ",") {
		term = strings.TrimSpace(term)
		if len(out) == maxLabelTerms {
			return nil, fmt.Errorf("label selector has more than %d terms", maxLabelTerms)
		}
		var r labelReq
		switch {
		case strings.HasPrefix(term, "!"):
			r = labelReq{key: strings.TrimSpace(term[1:]), op: labelAbsent}
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			r = labelReq{key: strings.TrimSpace(k), value: strings.TrimSpace(v), op: labelNotEqual}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			r = labelReq{key: strings.TrimSpace(k), value: strings.TrimSpace(strings.TrimPrefix(v, "=")), op: labelEqual}
		default:
			r = labelReq{key: term, op: labelExists}
		}
		if !validLabelKey(r.key) {
			return nil, fmt.Errorf("label selector term %q: %q is not a label key", term, r.key)
		}
		if (r.op == labelEqual || r.op == labelNotEqual) && !validLabelValue(r.value) {
			return nil, fmt.Errorf("label selector term %q: %q is not a label value", term, r.value)
		}
		out = append(out, r)
	}
	return out, nil
}

// validLabelKey: an optional DNS-subdomain prefix and a slash, then a name
// of 1-63 alphanumerics, '-', '_' or '.', starting and ending
// alphanumeric.
func validLabelKey(k string) bool {
	if len(k) == 0 || len(k) > maxLabelKey {
		return false
	}
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		prefix, name = "", k
	} else if prefix == "" || len(prefix) > 253 || strings.ContainsFunc(prefix, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.')
	}) {
		return false
	}
	return name != "" && validLabelValue(name)
}

// validLabelValue: empty, or 1-63 alphanumerics, '-', '_' or '.',
// starting and ending alphanumeric.
func validLabelValue(v string) bool {
	if len(v) > maxLabelValue {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(v); i++ {
		if c := v[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return v == "" || alnum(v[0]) && alnum(v[len(v)-1])
}

// matchLabels reports whether labels (sorted by key) satisfy every term.
func matchLabels(reqs []labelReq, labels []resolver.Label) bool {
	for _, r := range reqs {
		i, found := slices.BinarySearchFunc(labels, r.key, func(l resolver.Label, k string) int { return strings.Compare(l.Key, k) })
		var ok bool
		switch r.op {
		case labelEqual:
			ok = found && labels[i].Value == r.value
		case labelNotEqual:
			ok = !found || labels[i].Value != r.value
		case labelExists:
			ok = found
		case labelAbsent:
			ok = !found
		}
		if !ok {
			return false
		}
	}
	return true
}
