package sim

import (
	"html/template"
	"net/http"
	"strings"
	"sync"
)

// The page at /page is what a person who opens a sandbox's preview link
// sees, for tests with a real browser (e2e/browser).
//
// GET /page renders it. Its script opens a WebSocket to /ws of the page's
// own origin (or to the URL in ?ws=), sends ?msg= (default "hello") and
// writes the echo into #ws, whose data-state ends "echoed" or "failed".
// With ?post=<url> the script instead submits a form POST to that URL at
// once, with ?note= as the field note: the page of an attacker, for the
// cross-origin tests. #cookies lists the names of the cookies the sandbox
// received with the GET.
//
// POST /page records its note in the backend's guestbook and answers 303
// to /page, which lists every note received in #notes (li[data-note]):
// the browser itself can show what reached the sandbox, and what did not.

// maxNotes bounds a guestbook; older notes are dropped.
const maxNotes = 100

// maxPageForm bounds the body of POST /page.
const maxPageForm = 4 << 10

// guestbook holds the notes one backend received.
type guestbook struct {
	mu    sync.Mutex
	notes []string
}

// guestbooks maps each *backend to its *guestbook. It lives here rather
// than in the backend so that the page stays in this file; an entry
// outlives its stopped backend, which costs a few bytes per pod in a test
// process.
var guestbooks sync.Map

func (b *backend) guestbook() *guestbook {
	g, _ := guestbooks.LoadOrStore(b, &guestbook{})
	return g.(*guestbook)
}

func (b *backend) servePage(w http.ResponseWriter, r *http.Request) {
	// Every visit must reach the sandbox and show its notes as they are
	// now: no cached copy.
	w.Header().Set("Cache-Control", "no-store")
	g := b.guestbook()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.notes = append(g.notes, r.PostForm.Get("note"))
		if len(g.notes) > maxNotes {
			g.notes = g.notes[len(g.notes)-maxNotes:]
		}
		g.mu.Unlock()
		// Post, redirect, get: a reload does not post the note again.
		http.Redirect(w, r, "/page", http.StatusSeeOther)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.Name)
	}
	g.mu.Lock()
	notes := append([]string(nil), g.notes...)
	g.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplate.Execute(w, pageData{Sandbox: *b.sandbox.Load(), Cookies: strings.Join(cookies, " "), Notes: notes})
}

type pageData struct {
	Sandbox string
	Cookies string
	Notes   []string
}

// pageTemplate is the page. html/template escapes the sandbox's name and
// the notes, which come from whoever posted them.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{.Sandbox}}</title></head>
<body>
<h1 id="sandbox">{{.Sandbox}}</h1>
<p>WebSocket: <output id="ws" data-state="idle"></output></p>
<p>Cookies the sandbox received: <output id="cookies">{{.Cookies}}</output></p>
<ul id="notes">{{range .Notes}}<li data-note="{{.}}">{{.}}</li>{{end}}</ul>
<form id="post" method="post"><input type="hidden" name="note"></form>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const post = params.get("post");
if (post) {
	const form = document.getElementById("post");
	form.action = post;
	form.elements.note.value = params.get("note") || "";
	form.submit();
} else {
	const out = document.getElementById("ws");
	const ws = new WebSocket(params.get("ws") || location.origin.replace(/^http/, "ws") + "/ws");
	out.dataset.state = "connecting";
	ws.onopen = () => ws.send(params.get("msg") || "hello");
	ws.onmessage = (e) => {
		out.textContent = e.data;
		out.dataset.state = "echoed";
		ws.close();
	};
	ws.onclose = (e) => {
		if (out.dataset.state !== "echoed") {
			out.textContent = "closed " + e.code;
			out.dataset.state = "failed";
		}
	};
}
</script>
</body>
</html>
`))
