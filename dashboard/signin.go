package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"time"
)

// Authenticator signs viewers in (Options.Auth): it tells which Viewer a
// bearer token is, the token of a Kubernetes ServiceAccount or user as
// the API server authenticates it. AccessAuth builds one from the
// router's access Checker.
//
// Its error says why not: one wrapping ErrForbidden answers 403,
// ErrRateLimited 429, ErrUnavailable 503 (the authority cannot answer
// now: no reason to sign in again); any other answers 401.
type Authenticator interface {
	Viewer(ctx context.Context, token string, client netip.Addr) (Viewer, error)
}

// Named is a Viewer that knows whose it is: api/session shows the name
// (the pages' "signed in as").
type Named interface {
	UserName() string
}

// Errors an Authenticator (or Options.Viewer) wraps to choose the answer.
var (
	ErrUnavailable = errors.New("dashboard: sign-in cannot be checked now")
	ErrRateLimited = errors.New("dashboard: too many attempts")
)

// DefaultSessionMaxAge is how long a browser keeps the session cookie.
const DefaultSessionMaxAge = 8 * time.Hour

// viewer finds out who is asking, by Options.Auth or Options.Viewer; nil
// and true when nobody is asked (everyone sees everything). It has
// answered when it returns false.
func (h *Handler) viewer(w http.ResponseWriter, r *http.Request) (Viewer, bool) {
	var vw Viewer
	var err error
	switch {
	case h.opts.Auth != nil:
		vw, err = h.signedIn(r)
	case h.opts.Viewer != nil:
		vw, err = h.opts.Viewer(r)
	default:
		return nil, true
	}
	if err == nil && vw == nil {
		h.log.Error("dashboard viewer hook returned neither a viewer nor an error")
		err = ErrForbidden // a mistake never shows all
	}
	if err != nil {
		refuse(w, err)
		return nil, false
	}
	return vw, true
}

// signedIn is the viewer of r's credential: its Authorization header, or
// else its session cookie.
func (h *Handler) signedIn(r *http.Request) (Viewer, error) {
	token, err := h.credential(r)
	if err != nil {
		return nil, err
	}
	return h.opts.Auth.Viewer(r.Context(), token, clientAddr(r))
}

// refuse answers a viewer's error: 403, 429, 503 for the errors that say
// so, 401 (sign in) for any other.
func refuse(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden", "you may not use the dashboard")
	case errors.Is(err, ErrRateLimited):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many attempts: wait a little")
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "who you are cannot be checked now: try again shortly")
	default:
		// No browser prompts for Bearer: the pages go to the sign-in page,
		// API clients learn the scheme.
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox-router dashboard"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "sign in to use the dashboard")
	}
}

func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// sessionRoutes serves sign-in and sign-out when Auth is set, and in any
// case api/session, which tells the pages whether to offer "Sign out".
func (h *Handler) sessionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/session", h.serveSession)
	if h.opts.Auth == nil {
		return
	}
	mux.Handle("GET /signin", loadAsset("static/signin.html"))
	mux.HandleFunc("POST /api/session", h.startSession)
	mux.HandleFunc("POST /api/session/end", h.endSession)
}

// sessionAnswer is api/session's: whether sign-in is on, and who is
// signed in (their user name, if the Viewer knows it).
type sessionAnswer struct {
	SignIn bool   `json:"signIn"`
	User   string `json:"user,omitempty"`
	// Next is where the browser goes after signing in (POST only).
	Next string `json:"next,omitempty"`
}

func (h *Handler) serveSession(w http.ResponseWriter, r *http.Request) {
	if h.opts.Auth == nil {
		writeJSON(w, http.StatusOK, sessionAnswer{})
		return
	}
	vw, ok := h.viewer(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, sessionAnswer{SignIn: true, User: userName(vw)})
}

func userName(vw Viewer) string {
	if n, ok := vw.(Named); ok {
		return n.UserName()
	}
	return ""
}

// maxSignInBody bounds a sign-in request: a token of maxTokenBytes, its
// field names and the next path, with room for form encoding.
const maxSignInBody = 3*maxTokenBytes + 4096

// startSession signs a browser in: it checks the token through Auth and
// only then sets the session cookie. A JSON request (the sign-in page's
// script) gets 200 with who signed in and where to go; a plain form post
// gets 303 there.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request) {
	if !h.sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross_origin", "sign-in must come from the dashboard's own pages")
		return
	}
	// The listener has no read timeout (the event streams are long): a
	// sign-in's body gets a deadline of its own.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Second))
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	var in struct {
		Token string `json:"token"`
		Next  string `json:"next"`
	}
	ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	viaJSON := ctype == "application/json"
	switch ctype {
	case "application/json":
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			badBody(w, err)
			return
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			badBody(w, err)
			return
		}
		in.Token, in.Next = r.PostForm.Get("token"), r.PostForm.Get("next")
	default:
		writeError(w, http.StatusUnsupportedMediaType, "bad_content_type", "send the token as a form or as JSON")
		return
	}
	name := h.cookieName(r)
	if code, detail := checkCookieToken(in.Token, name); code != "" {
		writeError(w, http.StatusBadRequest, code, detail)
		return
	}
	vw, err := h.opts.Auth.Viewer(r.Context(), in.Token, clientAddr(r))
	if err == nil && vw == nil {
		err = ErrForbidden
	}
	if err != nil {
		refuse(w, err)
		return
	}
	http.SetCookie(w, h.sessionCookie(r, in.Token))
	next := safeNext(h.opts.Prefix, in.Next)
	h.log.Info("dashboard: signed in", "user", userName(vw), "client", clientAddr(r))
	if !viaJSON {
		w.Header().Set("Location", next)
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, sessionAnswer{SignIn: true, User: userName(vw), Next: next})
}

func badBody(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "the sign-in request is too large")
		return
	}
	writeError(w, http.StatusBadRequest, "bad_request", "the sign-in request is not a form or JSON object")
}

// endSession signs a browser out: the cookie is cleared. The token itself
// stays valid until it expires or is revoked (it is the ServiceAccount's).
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request) {
	if !h.sameOrigin(r) {
		writeError(w, http.StatusForbidden, "cross_origin", "sign-out must come from the dashboard's own pages")
		return
	}
	http.SetCookie(w, h.clearedCookie(r))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
