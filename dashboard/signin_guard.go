package dashboard

import (
	"net/http"
	"net/url"
	"strings"
)

// sameOrigin reports whether a state-changing request (sign-in,
// sign-out) comes from the dashboard's own pages. The browser's
// Sec-Fetch-Site decides when it is sent (no page can forge it); else
// the Origin must name this host (and https when the dashboard is served
// over it). A request with neither is refused: every browser that can
// run the pages sends one, and only a browser needs a cookie.
//
// Without it another site could sign a visitor in with the other site's
// own token (login CSRF: the visitor then sees, and acts in, an account
// that is not theirs) or sign them out.
func (h *Handler) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false
	}
	switch u.Scheme {
	case "https":
	case "http":
		if h.secure(r) {
			return false
		}
	default:
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// maxNextBytes bounds the path a sign-in returns to.
const maxNextBytes = 2048

// safeNext is where a browser goes after signing in: next when it is a
// path under prefix on this origin, else prefix. It is an open-redirect
// guard, so it accepts only what it can see is harmless rather than
// refusing what it knows is not: printable ASCII without backslashes, an
// absolute path (no scheme, no host, no "//" that a browser reads as one)
// under prefix, no dot segments that would climb out of it, no percent
// escapes in the path (a browser decodes %2e as a dot), then any query
// and fragment that parse.
func safeNext(prefix, next string) string {
	if next == "" || len(next) > maxNextBytes || !strings.HasPrefix(next, prefix) {
		return prefix
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return prefix
		}
	}
	p := next
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if strings.Contains(p, "//") || strings.Contains(p, "%") {
		return prefix
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return prefix
		}
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return prefix // a broken escape in the query or fragment
	}
	return next
}
