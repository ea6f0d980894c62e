package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

// static holds the pages, the script and the style sheet: everything a
// browser loads comes from here, so the dashboard works offline and the
// CSP can be 'self'.
//
//go:embed static
var static embed.FS

// asset is one embedded file with what a conditional GET needs.
type asset struct {
	name  string
	body  []byte
	etag  string
	ctype string
}

func loadAsset(name string) asset {
	body, err := fs.ReadFile(static, name)
	if err != nil {
		panic("dashboard: embedded asset missing: " + name) // a build mistake, caught by every test
	}
	sum := sha256.Sum256(body)
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	return asset{name: name, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
}

// ServeHTTP answers with the asset; browsers revalidate (no-cache) and get
// 304 while it is unchanged, so a new binary's files are seen at once.
func (a asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// pages are the routes of the page set, relative to the prefix.
var pages = map[string]string{
	"/{$}":       "static/index.html",
	"/sandboxes": "static/sandboxes.html",
	"/sandbox":   "static/sandbox.html",
	"/warmpools": "static/warmpools.html",
	"/templates": "static/templates.html",
	"/claims":    "static/claims.html",
}

func (h *Handler) pageRoutes(mux *http.ServeMux) {
	for route, file := range pages {
		mux.Handle("GET "+route, loadAsset(file))
	}
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		panic("dashboard: embedded assets unreadable: " + err.Error())
	}
	for _, e := range entries {
		if !e.IsDir() && path.Ext(e.Name()) != ".html" {
			mux.Handle("GET /static/"+e.Name(), loadAsset("static/"+e.Name()))
		}
	}
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such page")
	})
}
