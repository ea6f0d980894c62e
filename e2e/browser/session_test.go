package browser

import (
	"crypto/tls"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserSessions walks Chromium through preview links to two
// sandboxes of one namespace, behind the router binary over HTTPS with
// kubernetes and scoped-token access: each entry link leaves a host-only
// __Host- cookie, pages and their same-origin WebSockets work with it, it
// opens no other sandbox, and the cross-origin requests a page elsewhere
// can make the browser send are refused: a cross-site POST arrives
// without the cookie (SameSite=Lax), a same-site one from another
// sandbox's page arrives with it and gets 403 cross_origin_refused, as
// does a WebSocket that page opens. Nothing refused reaches the sandbox:
// its page lists every POST it got.
func TestBrowserSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("real browser, etcd and kube-apiserver: skipped in -short mode")
	}
	chromium(t) // before minutes of set-up: fail (or skip) at once without a browser
	e := sharedEnv(t)
	names := e.sandboxes(t, "sb1", "sb2")
	sbA, sbB := names[0], names[1]
	signer := newScopedSigner(t)
	certFile, keyFile, spki := serverCert(t)
	serverKeyPair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The session cookie's SameSite is left at its default, lax.
	router := e.startRouter(t,
		"--authz-mode", "kubernetes,scoped-token", "--authz-scoped-token-public-keys", signer.keyDir,
		"--base-domain", baseDomain, "--authz-cookie-name", cookieName,
		"--listen-https", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	_, port, err := net.SplitHostPort(router.HTTPSAddr)
	if err != nil {
		t.Fatalf("the router's HTTPS address %q: %v", router.HTTPSAddr, err)
	}
	b := startBrowser(t, spki)

	// Sandbox A's link holds a scoped token for its instance; sandbox B's
	// a ServiceAccount token that RBAC lets reach B only.
	const tokenLife = time.Hour
	tokenA := signer.mint(t, sbA, e.uid(t, sbA), tokenLife)
	tokenB := e.serviceAccountFor(t, sbB)
	hostA, hostB := "8888-"+sbA+"."+namespace+"."+baseDomain, "8888-"+sbB+"."+namespace+"."+baseDomain
	originA, originB := "https://"+hostA+":"+port, "https://"+hostB+":"+port
	pageA, pageB := originA+"/page", originB+"/page"
	const session = "__Host-" + cookieName // over HTTPS

	// The later steps stand on the sessions; other failures let them run.
	var sessionA, sessionB bool
	t.Run("a preview link starts a session", func(t *testing.T) {
		ctx := b.step(t)
		mark := b.net.mark()
		entry := pageA + "?msg=hi-a&sandbox_token=" + url.QueryEscape(tokenA)
		resp := b.open(t, ctx, entry)
		if resp.Status != http.StatusOK || resp.URL != pageA+"?msg=hi-a" {
			t.Fatalf("entry link: ended at %s with %d, want %s?msg=hi-a with 200", resp.URL, resp.Status, pageA)
		}
		if x := b.net.wait(t, ctx, mark, http.MethodGet, entry); x.Status != http.StatusFound || x.ServedBy != "" {
			t.Errorf("the entry link itself: %v, want the router's 302", x)
		}
		t.Logf("protocol to the router: %s", resp.Protocol)

		cookies := b.cookies(t, ctx, originA+"/")
		if len(cookies) != 1 {
			t.Fatalf("cookies for %s: %s, want the session cookie alone", originA, describe(cookies))
		}
		sessionA = true
		c := cookies[0]
		// A host-only cookie has the host as its domain; a Domain
		// attribute would show as ".team-a.sandbox.test" and reach every
		// sandbox of the namespace.
		if c.Name != session || c.Value != tokenA || c.Domain != hostA || c.Path != "/" || !c.HTTPOnly || !c.Secure ||
			c.SameSite != network.CookieSameSiteLax {
			t.Errorf("session cookie %s, want %s=<the token>, domain %s (host-only), path /, HttpOnly, Secure, SameSite=Lax", describe(cookies), session, hostA)
		}
		// The cookie lives as long as the token, not longer.
		if expires := time.Unix(int64(c.Expires), 0); c.Session || expires.After(time.Now().Add(tokenLife+time.Minute)) {
			t.Errorf("session cookie expires %v (session %t), want within the token's hour", expires, c.Session)
		}
		if all := b.allCookies(t, ctx); len(all) != 1 {
			t.Errorf("the browser holds %s, want one cookie", describe(all))
		}

		if state, text := b.webSocket(t, ctx); state != "echoed" || text != "hi-a" {
			t.Errorf("the page's WebSocket: %s %q, want the echo of hi-a", state, text)
		}
		if got := b.text(t, ctx, "#cookies"); got != "" {
			t.Errorf("the sandbox received the cookies %q: the session cookie must stop at the router", got)
		}
		if js, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`)); err != nil || js != "" {
			t.Errorf("document.cookie = %q (%v): HttpOnly must hide the session from scripts", js, err)
		}
	})
	if !sessionA {
		t.FailNow()
	}

	t.Run("the cookie opens no other sandbox", func(t *testing.T) {
		ctx := b.step(t)
		if resp := b.open(t, ctx, pageB); resp.Status != http.StatusUnauthorized {
			t.Errorf("sandbox B with A's session: %d, want 401", resp.Status)
		}
		if code := b.text(t, ctx, "code"); code != "missing_credentials" {
			t.Errorf("sandbox B with A's session: code %q, want missing_credentials", code)
		}
		if cookies := b.cookies(t, ctx, originB+"/"); len(cookies) != 0 {
			t.Errorf("cookies for %s: %s, want none", originB, describe(cookies))
		}
	})

	t.Run("a same-origin form POST reaches the sandbox", func(t *testing.T) {
		ctx := b.step(t)
		mark := b.net.mark()
		b.follow(t, ctx, attack(pageA, pageA, "same-origin"))
		// The sim answers 303 to its page, which lists the note.
		b.text(t, ctx, `#notes li[data-note="same-origin"]`)
		x := b.net.wait(t, ctx, mark, http.MethodPost, pageA)
		if x.Status != http.StatusSeeOther || x.ServedBy == "" {
			t.Errorf("same-origin POST: %v, want the sandbox's 303", x)
		}
		if sent, why := x.sent(session, hostA); !sent {
			t.Errorf("same-origin POST went without the session cookie (%s)", why)
		}
	})

	t.Run("a second session, for sandbox B, by a ServiceAccount token", func(t *testing.T) {
		ctx := b.step(t)
		resp := b.open(t, ctx, pageB+"?msg=hi-b&sandbox_token="+url.QueryEscape(tokenB))
		if resp.Status != http.StatusOK || resp.URL != pageB+"?msg=hi-b" {
			t.Fatalf("entry link to B: ended at %s with %d", resp.URL, resp.Status)
		}
		sessionB = true
		if state, text := b.webSocket(t, ctx); state != "echoed" || text != "hi-b" {
			t.Errorf("B's page's WebSocket: %s %q, want the echo of hi-b", state, text)
		}
		for _, tc := range []struct{ origin, host, token string }{{originA, hostA, tokenA}, {originB, hostB, tokenB}} {
			cookies := b.cookies(t, ctx, tc.origin+"/")
			if len(cookies) != 1 || cookies[0].Name != session || cookies[0].Value != tc.token || cookies[0].Domain != tc.host {
				t.Errorf("cookies for %s: %s, want its own host-only session cookie alone", tc.origin, describe(cookies))
			}
		}
	})
	if !sessionB {
		t.FailNow() // the attacks below come from B's page
	}

	t.Run("a same-site form POST from another sandbox's page is refused", func(t *testing.T) {
		ctx := b.step(t)
		mark := b.net.mark()
		b.follow(t, ctx, attack(pageB, pageA, "from-b"))
		x := b.net.wait(t, ctx, mark, http.MethodPost, pageA)
		// Same site (sandbox.test), so SameSite=Lax let the cookie go:
		// the router, not the browser, refused it.
		if sent, why := x.sent(session, hostA); !sent {
			t.Errorf("the same-site POST went without A's cookie (%s): the router's check was not exercised", why)
		}
		if x.Status != http.StatusForbidden || x.ServedBy != "" {
			t.Fatalf("POST from B's page to A: %v, want the router's 403", x)
		}
		if code := b.text(t, ctx, "code"); code != "cross_origin_refused" {
			t.Errorf("POST from B's page to A: code %q at %s, want cross_origin_refused", code, b.location(ctx))
		}
	})

	t.Run("a same-site WebSocket from another sandbox's page is refused", func(t *testing.T) {
		ctx := b.step(t)
		mark := b.net.mark()
		wsA := "wss://" + hostA + ":" + port + "/ws"
		if resp := b.open(t, ctx, pageB+"?ws="+url.QueryEscape(wsA)+"&msg=hijack"); resp.Status != http.StatusOK {
			t.Fatalf("B's page: %d", resp.Status)
		}
		if state, text := b.webSocket(t, ctx); state != "failed" {
			t.Errorf("WebSocket from B's page to A: %s %q, want it refused", state, text)
		}
		// The protocol does not say which cookies a handshake carried, but
		// the router tells: without A's cookie it would answer 401
		// missing_credentials; with it, from B's origin, 403.
		if x := b.net.wait(t, ctx, mark, http.MethodGet, wsA); x.Status != http.StatusForbidden {
			t.Errorf("WebSocket from B's page to A: %v, want the router's 403", x)
		}
	})

	t.Run("a cross-site form POST goes without the cookie", func(t *testing.T) {
		ctx := b.step(t)
		// Another site over HTTPS too (the router's certificate names
		// 127.0.0.1 as well), so that only the site differs, not the
		// scheme.
		elsewhere := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = attackPage.Execute(w, attackData{Action: pageA, Note: "cross-site"})
		}))
		elsewhere.TLS = &tls.Config{Certificates: []tls.Certificate{serverKeyPair}}
		elsewhere.StartTLS()
		t.Cleanup(elsewhere.Close)
		mark := b.net.mark()
		b.follow(t, ctx, elsewhere.URL)
		x := b.net.wait(t, ctx, mark, http.MethodPost, pageA)
		if sent, why := x.sent(session, hostA); sent || !strings.Contains(why, "SameSiteLax") {
			t.Errorf("the cross-site POST: cookie sent %t (%s), want it held back for SameSite=Lax", sent, why)
		}
		if x.Status != http.StatusUnauthorized || x.ServedBy != "" {
			t.Fatalf("POST from %s to A: %v, want the router's 401", elsewhere.URL, x)
		}
		if code := b.text(t, ctx, "code"); code != "missing_credentials" {
			t.Errorf("POST from %s to A: code %q at %s, want missing_credentials", elsewhere.URL, code, b.location(ctx))
		}
	})

	t.Run("what was refused never reached the sandbox", func(t *testing.T) {
		ctx := b.step(t)
		if resp := b.open(t, ctx, pageA); resp.Status != http.StatusOK {
			t.Fatalf("A's page: %d", resp.Status)
		}
		if notes := b.notes(t, ctx); !slices.Equal(notes, []string{"same-origin"}) {
			t.Errorf("sandbox A received the notes %q, want only same-origin", notes)
		}
	})
}

// attack is the URL of the sim's page at page that, loaded, submits a
// form POST with note to target.
func attack(page, target, note string) string {
	return page + "?" + url.Values{"post": {target}, "note": {note}}.Encode()
}

// attackPage is a page of another site that submits a form POST at once.
var attackPage = template.Must(template.New("attack").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>elsewhere</title></head><body>
<form method="post" action="{{.Action}}"><input type="hidden" name="note" value="{{.Note}}"></form>
<script>document.forms[0].submit();</script>
</body></html>
`))

type attackData struct{ Action, Note string }

func describe(cookies []*network.Cookie) string {
	var parts []string
	for _, c := range cookies {
		parts = append(parts, fmt.Sprintf("{%s domain=%s path=%s httpOnly=%t secure=%t sameSite=%s session=%t}",
			c.Name, c.Domain, c.Path, c.HTTPOnly, c.Secure, c.SameSite, c.Session))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
