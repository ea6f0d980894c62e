package dashboard

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func checkSecurityHeaders(t *testing.T, path string, hd http.Header) {
	t.Helper()
	csp := hd.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", path, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: CSP %q allows inline code", path, csp)
	}
	if hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s: headers %v", path, hd)
	}
}

// TestPagesSmoke: each page loads, refers only to embedded assets (which
// are served), runs no inline code, and labels every control.
func TestPagesSmoke(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture()})
	for _, path := range []string{"/", "/sandboxes", "/sandbox?namespace=alpha&name=web-1"} {
		rec := get(t, h, path, nil)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		checkSecurityHeaders(t, path, rec.Header())
		doc, err := html.Parse(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		labels := map[string]bool{}
		var controls []string
		var walk func(n *html.Node)
		walk = func(n *html.Node) {
			if n.Type == html.ElementNode {
				attrs := map[string]string{}
				for _, a := range n.Attr {
					attrs[a.Key] = a.Val
					if strings.HasPrefix(a.Key, "on") || a.Key == "style" {
						t.Errorf("%s: <%s %s>: inline code or style", path, n.Data, a.Key)
					}
				}
				switch n.Data {
				case "html":
					if attrs["lang"] == "" {
						t.Errorf("%s: no lang", path)
					}
				case "script":
					if attrs["src"] == "" || n.FirstChild != nil {
						t.Errorf("%s: an inline script", path)
					}
				case "style":
					t.Errorf("%s: an inline style sheet", path)
				case "label":
					labels[attrs["for"]] = true
				case "input", "select", "textarea":
					controls = append(controls, attrs["id"])
				}
				for _, attr := range []string{"src", "href"} {
					ref, ok := attrs[attr]
					if !ok {
						continue
					}
					if strings.Contains(ref, "://") || strings.HasPrefix(ref, "//") || strings.HasPrefix(ref, "/") {
						t.Errorf("%s: %s=%q is not relative to the dashboard", path, attr, ref)
					}
					if file, isAsset := strings.CutPrefix(ref, "static/"); isAsset {
						if _, err := fs.Stat(static, "static/"+file); err != nil {
							t.Errorf("%s: %s is not embedded", path, ref)
						}
						if r := get(t, h, "/"+ref, nil); r.Code != http.StatusOK {
							t.Errorf("%s: %s answers %d", path, ref, r.Code)
						}
					}
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c)
			}
		}
		walk(doc)
		for _, id := range controls {
			if id == "" || !labels[id] {
				t.Errorf("%s: control %q has no <label for>", path, id)
			}
		}
	}
	// The script talks only to its own origin.
	js, _ := fs.ReadFile(static, "static/app.js")
	if strings.Contains(string(js), "://") || strings.Contains(string(js), "innerHTML") || strings.Contains(string(js), "eval(") {
		t.Error("app.js names another origin or builds markup from strings")
	}
}

func TestServedUnderPrefix(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture(), Prefix: "/dashboard/"})
	for path, code := range map[string]int{
		"/dashboard":                    http.StatusMovedPermanently,
		"/dashboard/":                   http.StatusOK,
		"/dashboard/sandboxes":          http.StatusOK,
		"/dashboard/static/app.js":      http.StatusOK,
		"/dashboard/static/style.css":   http.StatusOK,
		"/dashboard/static/index.html":  http.StatusNotFound, // pages have their own routes
		"/dashboard/static/":            http.StatusNotFound, // no listing
		"/dashboard/api/overview":       http.StatusOK,
		"/dashboard/api/nope":           http.StatusNotFound,
		"/dashboard/nope":               http.StatusNotFound,
		"/sandboxes":                    http.StatusNotFound,
		"/dashboardx/":                  http.StatusNotFound,
		"/dashboard/api/sandboxes?q=we": http.StatusOK,
	} {
		rec := get(t, h, path, nil)
		if rec.Code != code {
			t.Errorf("%s: %d, want %d", path, rec.Code, code)
		}
		checkSecurityHeaders(t, path, rec.Header())
	}
	if loc := get(t, h, "/dashboard", nil).Header().Get("Location"); loc != "/dashboard/" {
		t.Errorf("redirect to %q", loc)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/dashboard/api/overview", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestAssetsRevalidate(t *testing.T) {
	h := start(t, Options{Sandboxes: fixture()})
	rec := get(t, h, "/static/app.js", nil)
	etag := rec.Header().Get("ETag")
	if etag == "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") {
		t.Fatalf("headers %v", rec.Header())
	}
	req := httptest.NewRequest(http.MethodGet, "/static/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d", rec.Code)
	}
}
