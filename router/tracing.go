package router

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracing makes one server span per request and continues the client's W3C
// trace context. The span's context is injected into the request the
// sandbox receives, so its own spans join the same trace.
//
// When no tracer provider is configured tracing is nil and the client's
// traceparent header travels to the sandbox untouched: propagation still
// works, and the hot path pays nothing.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

func newTracing(tp trace.TracerProvider) *tracing {
	if tp == nil {
		return nil
	}
	if _, isNoop := tp.(noop.TracerProvider); isNoop {
		return nil
	}
	return &tracing{
		tracer: tp.Tracer("github.com/sandbox-router/sandbox-router/router"),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
}

// start extracts the client's context, starts the span and rewrites the
// request's trace headers so the sandbox sees the router's span as parent.
func (t *tracing) start(r *http.Request) (context.Context, trace.Span) {
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, "sandbox-router "+r.Method,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("network.protocol.version", strconv.Itoa(r.ProtoMajor)),
		))
	delete(r.Header, "Traceparent")
	delete(r.Header, "Tracestate")
	t.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return ctx, span
}

func (t *tracing) end(span trace.Span, rec *record) {
	span.SetAttributes(
		attribute.String("sandbox.name", rec.key.Name),
		attribute.String("sandbox.namespace", rec.key.Namespace),
		attribute.Int("http.response.status_code", rec.status),
	)
	if rec.status >= 500 {
		span.SetStatus(codes.Error, rec.code)
	}
	span.End()
}

// traceIDFromHeader reads the trace id out of a W3C traceparent header
// ("00-<32 hex>-<16 hex>-<2 hex>") without allocating.
func traceIDFromHeader(h http.Header) string {
	v := headerValue(h, "Traceparent")
	if len(v) < 55 || v[2] != '-' || v[35] != '-' {
		return ""
	}
	id := v[3:35]
	for i := 0; i < len(id); i++ {
		// Only lower-case hex: anything else could forge access-log fields.
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
	}
	return id
}
