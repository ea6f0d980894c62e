package resolver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPendingKeysCoalesce: a key added many times is returned once, the
// set is empty after Next, and Next waits for the next Add or ctx.
func TestPendingKeysCoalesce(t *testing.T) {
	p := NewPendingKeys()
	a, b := Key{Namespace: "ns", Name: "a"}, Key{Namespace: "ns", Name: "b"}
	for range 3 {
		p.Add(a, b)
	}
	p.Add(a)
	keys, err := p.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(keys, func(x, y Key) int { return strings.Compare(x.Name, y.Name) })
	if !slices.Equal(keys, []Key{a, b}) {
		t.Fatalf("keys %v, want a and b once", keys)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if keys, err := p.Next(ctx); err == nil {
		t.Fatalf("Next returned %v with nothing pending", keys)
	}
	got := make(chan []Key)
	go func() {
		keys, _ := p.Next(t.Context())
		got <- keys
	}()
	p.Add(b)
	if keys := <-got; !slices.Equal(keys, []Key{b}) {
		t.Fatalf("keys %v, want [b]", keys)
	}
}
