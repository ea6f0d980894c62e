package router

import (
	"context"
	"errors"
	"net/http"

	"github.com/sandbox-router/sandbox-router/resolver"
)

// forwardOnce makes one upstream attempt. It returns an error only when
// nothing was sent to the client yet, so the caller can retry or answer.
func (rt *Router) forwardOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, t *upstreamTarget, rec *record) error {
	defer t.headArrived() // on every early return
	fwd := rt.forward.forwardedFor(r)
	if rt.opts.IdentityHeaders {
		fwd.caller = rec.caller
	}
	upgrade := ""
	if r.ProtoMajor == 1 {
		upgrade = upgradeType(r.Header)
	}
	if upgrade == "" && (t.protocol == resolver.ProtocolH2C || t.protocol == resolver.ProtocolAuto && isGRPC(r)) {
		if r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody {
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		resp, err := rt.roundTripH2C(ctx, r, t.addr, &fwd)
		t.headArrived()
		if err != nil {
			return err
		}
		complete := rt.writeResponse(w, resp, connectionTokens(resp.Header), rec, nil)
		// Judged now: interrupting the client's body read below ends the
		// request's context, which must not pass for a departed client.
		left := clientLeft(ctx)
		if cb, ok := r.Body.(*countingBody); ok && !cb.eof.Load() && r.ProtoMajor == 1 {
			// The sandbox answered before the client finished sending:
			// the transport is still blocked reading the client's body,
			// and closing the response waits for it. Interrupt the read
			// and have net/http close the client connection.
			closeAfterReply(w)
			_ = http.NewResponseController(w).SetReadDeadline(aLongTimeAgo)
		}
		resp.Body.Close()
		// Cut short: the client must not take it for a whole response.
		rec.abort = rec.abort || !complete && !left
		return nil
	}
	if upgrade != "" {
		// A place under the tunnel cap, taken before the sandbox hears of
		// the upgrade; the tunnel gives it back when it closes.
		if !rt.limits.tunnels.acquire() {
			rt.metrics.refused("tunnel_limit")
			rt.warnings.tunnelCap.log(rt.log, "at the tunnel limit: refusing upgrades", "limit", rt.limits.tunnels.max)
			return tunnelLimitError
		}
		defer func() {
			if !rec.tunneled {
				rt.limits.tunnels.release()
			}
		}()
	}
	ex, err := rt.roundTripHTTP1(ctx, w, r, t.addr, t.fresh, &fwd, upgrade)
	t.headArrived()
	if err != nil {
		return err
	}
	if ex.resp.StatusCode == http.StatusSwitchingProtocols {
		if upgrade == "" {
			ex.finish(false)
			return &attemptError{failUpstream, errors.New("unsolicited 101 Switching Protocols")}
		}
		if !ex.stopCancel() {
			// The client left (or its deadline passed) as the 101 came:
			// the connection is closed already, nothing to relay.
			ex.conn.discard()
			return &attemptError{contextFailure(ctx), context.Cause(ctx)}
		}
		rt.serveUpgrade(w, r, ex, rec)
		return nil
	}
	complete := rt.writeResponse(w, ex.resp, ex.connTokens, rec, ex.bodyReady())
	// Judged before finish: interrupting the client's body read there
	// ends the request's context, which must not pass for a departed
	// client.
	left := clientLeft(ctx)
	ex.finish(complete)
	rec.abort = rec.abort || !complete && !left
	return nil
}

// writeResponse relays the response head, body and trailers. It returns
// whether the body was relayed to its end. connTokens are the headers the
// response's Connection header named; bodyReady, when not nil, waits for
// the body's next bytes without a buffer (copyBody).
func (rt *Router) writeResponse(w http.ResponseWriter, resp *http.Response, connTokens []string, rec *record, bodyReady func() error) bool {
	h := w.Header()
	copyResponseHeaders(h, resp.Header, connTokens)
	confineResponse(h, &rec.key)
	if _, ok := h["Content-Type"]; !ok {
		// A proxy must not invent a media type: nil stops net/http
		// from sniffing one.
		h["Content-Type"] = nil
	}
	announced := announceTrailers(h, resp.Trailer)
	if announced != nil {
		// An HTTP/2 sandbox may send a Content-Length with trailers;
		// HTTP/1.1 can carry trailers only in a chunked body, and
		// net/http drops them when a length is set.
		delete(h, "Content-Length")
	}
	// A response known to have no body is not flushed at its head: it
	// goes out whole when the handler returns. For gRPC that matters: an
	// error without a message is "trailers-only", grpc-status in the
	// only HEADERS frame with END_STREAM; flushed, the head would go out
	// alone and the stream end without trailers, which clients read as
	// Internal instead of the real status.
	flush := resp.ContentLength != 0 && shouldFlushEachWrite(resp)
	rec.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	if flush {
		// Streams: let the client see the head before the first event.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	if !flush {
		bodyReady = nil // a body of known length is not waited on: it flows
	}
	n, err := copyBody(w, resp.Body, flush, bodyReady)
	rec.bytesOut = n
	if err != nil {
		if errors.Is(err, errClientGone) {
			rec.code = "client_closed"
		} else {
			rec.code = "upstream_body_aborted"
		}
		return false
	}
	writeTrailers(h, resp.Trailer, announced)
	return true
}

// isGRPC recognises gRPC by its content type (application/grpc, +proto, ...).
func isGRPC(r *http.Request) bool {
	ct := headerValue(r.Header, "Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/grpc"
}
