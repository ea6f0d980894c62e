package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's package chromium puts the browser.
const chromiumPath = "/usr/bin/chromium"

// skipBrowserEnv, set to 1, skips the browser tests on a machine without
// Chromium. Nothing else does: a browser test that skipped itself when
// the browser is missing would let CI pass without ever running it.
const skipBrowserEnv = "SANDBOX_ROUTER_SKIP_BROWSER"

// chromium returns the browser to run, or fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv(skipBrowserEnv) == "1" {
		t.Skipf("%s=1: browser tests skipped", skipBrowserEnv)
	}
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatalf("the browser tests need headless Chromium at %s (Debian: apt-get install -y chromium), "+
		"or %s=1 to skip them", chromiumPath, skipBrowserEnv)
	return ""
}

// browser is one headless Chromium with one tab, and the log of what the
// tab sent and got back. Each test starts its own: a fresh profile, so
// no cookie survives from another test.
type browser struct {
	tab context.Context
	net *netlog
}

// startBrowser starts Chromium; *.sandbox.test resolves to 127.0.0.1, and
// the certificate whose public key hashes to spki is trusted.
func startBrowser(t *testing.T, spki string) *browser {
	t.Helper()
	out := &tail{max: 64 << 10}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		// As root in a container Chromium cannot set up its own sandbox.
		chromedp.NoSandbox,
		// The sandbox hosts exist nowhere else; the router's port is in
		// the URLs.
		chromedp.Flag("host-resolver-rules", "MAP *."+baseDomain+" 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		// Straight to the router, whatever proxy the environment names.
		chromedp.Flag("no-proxy-server", true),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
		if t.Failed() {
			t.Logf("chromium output:\n%s", out)
		}
	})
	// The first action starts the browser and binds its life to the
	// context it gets: the tab's, without the deadline of a step.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v\n%s", err, out)
	}
	b := &browser{tab: tab, net: newNetlog()}
	if err := chromedp.Listen(tab, b.net.handle); err != nil {
		t.Fatal(err)
	}
	return b
}

// step is the tab with a deadline, for one step of a test: every wait in
// it ends by then.
func (b *browser) step(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(b.tab, waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// open navigates to url, waits for the page to load and returns the
// response of its document (the last one, after redirects).
func (b *browser) open(t *testing.T, ctx context.Context, url string) *network.Response {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return resp
}

// follow opens a page that goes on to another by itself (it submits a
// form at once), and does not wait for its load, which that navigation
// may cut short: the test then waits for what the last page shows. It
// starts from a blank page, so that nothing the test waits for can be
// found on the page before.
func (b *browser) follow(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open about:blank: %v", err)
	}
	res, err := chromedp.Call(ctx, page.Navigate, page.NavigateParams{URL: url})
	if err == nil && res.ErrorText != "" {
		err = fmt.Errorf("%s", res.ErrorText)
	}
	if err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
}

// text waits until an element matches css and returns its text.
func (b *browser) text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("wait for %s at %s: %v", css, b.location(ctx), err)
	}
	return s
}

// location is the tab's URL, for messages.
func (b *browser) location(ctx context.Context) string {
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		// ctx has ended: ask once more with a fresh deadline.
		cctx, cancel := context.WithTimeout(b.tab, waitTimeout)
		defer cancel()
		if loc, err = chromedp.Run(cctx, chromedp.Location()); err != nil {
			return fmt.Sprintf("(location: %v)", err)
		}
	}
	return loc
}

// webSocket waits until the sim's page has its WebSocket's outcome and
// returns it: "echoed" and the echo, or "failed" and how it closed.
func (b *browser) webSocket(t *testing.T, ctx context.Context) (state, text string) {
	t.Helper()
	sel := chromedp.CSS(`#ws[data-state="echoed"], #ws[data-state="failed"]`)
	attrs, err := chromedp.Run(ctx, chromedp.Attributes(sel))
	if err != nil {
		t.Fatalf("wait for the WebSocket's outcome at %s: %v", b.location(ctx), err)
	}
	if text, err = chromedp.Run(ctx, chromedp.Text(sel)); err != nil {
		t.Fatal(err)
	}
	return attrs["data-state"], text
}

// notes returns the notes the sim's page lists: what reached its sandbox
// by POST.
func (b *browser) notes(t *testing.T, ctx context.Context) []string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS("#notes"))); err != nil {
		t.Fatalf("wait for #notes at %s: %v", b.location(ctx), err)
	}
	notes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#notes li")].map(li => li.dataset.note)`))
	if err != nil {
		t.Fatal(err)
	}
	return notes
}

// cookies returns the cookies Chromium would send to url.
func (b *browser) cookies(t *testing.T, ctx context.Context, url string) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Cookies
}

// allCookies returns every cookie the browser holds.
func (b *browser) allCookies(t *testing.T, ctx context.Context) []*network.Cookie {
	t.Helper()
	res, err := chromedp.CallBrowser(ctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Cookies
}
