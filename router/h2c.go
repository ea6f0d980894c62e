package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// dialError marks a failed TCP connect inside http.Transport, so the retry
// loop can tell "never sent" from "sent and failed".
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// newH2CTransport is the cleartext HTTP/2 (prior knowledge) client used for
// gRPC and for sandboxes configured as h2c. HTTP/2 multiplexes, so one
// connection per endpoint serves every concurrent stream; net/http's own
// pool is the right tool here.
func newH2CTransport(opts PoolOptions, responseHeaderTimeout time.Duration, dial func(ctx context.Context, addr string) (net.Conn, error)) *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, addr)
			if err != nil && !errors.Is(err, errUpstreamLimit) {
				return nil, &dialError{err}
			}
			return c, err
		},
		MaxIdleConns:        opts.MaxIdleTotal,
		MaxIdleConnsPerHost: opts.MaxIdlePerEndpoint,
		// HTTP/2 multiplexes: this cap is reached only past its streams
		// per connection (250 for Go servers) times the cap.
		MaxConnsPerHost:        opts.MaxConnsPerEndpoint,
		IdleConnTimeout:        opts.IdleTimeout,
		ResponseHeaderTimeout:  responseHeaderTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		DisableCompression:     true,
		HTTP2: &http.HTTP2Config{
			// Detect a dead sandbox connection instead of waiting on TCP.
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     10 * time.Second,
		},
	}
}

// roundTripH2C forwards r over HTTP/2 to addr.
func (rt *Router) roundTripH2C(ctx context.Context, r *http.Request, addr netip.AddrPort, fwd *forwarded) (*http.Response, error) {
	h := make(http.Header, len(r.Header)+4)
	rt.forward.endToEnd(r.Header, func(k string, vv []string) { h[k] = vv })
	fwd.each(func(k, v string) { h[k] = []string{v} })
	if _, ok := h["User-Agent"]; !ok {
		// Without this, net/http would send a User-Agent of its own,
		// which the HTTP/1.1 path does not.
		h["User-Agent"] = nil
	}
	// gRPC servers may insist on "te: trailers"; it is the one TE value
	// HTTP/2 allows.
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		h["Te"] = []string{"trailers"}
	}

	out := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: "http", Host: addr.String(), Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Host:          r.Host,
		ContentLength: r.ContentLength,
		// Request trailers are not forwarded, on either upstream
		// protocol: the header policy could not filter them before they
		// arrive, after the body.
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// The transport closes a request body when a dial fails; the
		// router may retry that dial, so that close must not reach the
		// client's body. Any other close (a read is blocked or has
		// happened) must, to unblock it.
		out.Body = &retryableBody{r: r.Body}
	}
	out = out.WithContext(ctx)
	resp, err := rt.h2c.RoundTrip(out)
	if err == nil {
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			// net/http's HTTP/2 client does not range-check :status, and
			// WriteHeader panics on such a code.
			resp.Body.Close()
			return nil, &attemptError{failUpstream, errors.New("invalid :status from sandbox")}
		}
		return resp, nil
	}
	var de *dialError
	switch {
	case ctx.Err() != nil:
		// Before the dial check: a dial the client's departure (or its
		// deadline) cut short is not the sandbox refusing.
		return nil, &attemptError{contextFailure(ctx), err}
	case errors.Is(err, errUpstreamLimit):
		return nil, upstreamLimitError
	case errors.As(err, &de):
		return nil, &attemptError{failDial, err}
	case isMaxBytes(err):
		return nil, &attemptError{failBodyTooLarge, err}
	case isTimeout(err):
		return nil, &attemptError{failTimeout, err}
	default:
		return nil, &attemptError{failUpstream, err}
	}
}

// retryableBody passes a request body to the transport and ignores the
// close that comes with a failed dial (nothing read yet), so the retry can
// send the same body. A close while a read is blocked or after reading
// goes through: that is how a finished stream stops waiting on the client.
type retryableBody struct {
	r       io.ReadCloser
	reading atomic.Int32
	started atomic.Bool
}

func (b *retryableBody) Read(p []byte) (int, error) {
	b.started.Store(true)
	b.reading.Add(1)
	defer b.reading.Add(-1)
	return b.r.Read(p)
}

func (b *retryableBody) Close() error {
	if b.reading.Load() > 0 || b.started.Load() {
		return b.r.Close()
	}
	return nil
}
