package dashboard

import (
	"strings"
	"testing"

	"github.com/sandbox-router/sandbox-router/resolver"
)

func TestLabelSelector(t *testing.T) {
	labels := []resolver.Label{{Key: "app", Value: "agent"}, {Key: "example.com/tier", Value: "web"}, {Key: "team", Value: ""}}
	tests := []struct {
		sel   string
		match bool
		bad   bool
	}{
		{sel: "", match: true},
		{sel: "app=agent", match: true},
		{sel: "app==agent", match: true},
		{sel: " app = agent , example.com/tier=web ", match: true},
		{sel: "app=other", match: false},
		{sel: "app!=other", match: true},
		{sel: "missing!=x", match: true},
		{sel: "app!=agent", match: false},
		{sel: "team", match: true},
		{sel: "team=", match: true},
		{sel: "!team", match: false},
		{sel: "!missing", match: true},
		{sel: "missing", match: false},
		{sel: "app in (a,b)", bad: true},
		{sel: "=x", bad: true},
		{sel: "app=a b", bad: true},
		{sel: "app=<script>", bad: true},
		{sel: "Bad_Prefix/x=y", bad: true},
		{sel: "-app=x", bad: true},
		{sel: "a,b,c,d,e,f,g,h,i", bad: true},
		{sel: strings.Repeat("a", 1025), bad: true},
	}
	for _, tt := range tests {
		reqs, err := parseLabelSelector(tt.sel)
		if (err != nil) != tt.bad {
			t.Errorf("%q: error %v, want bad=%v", tt.sel, err, tt.bad)
			continue
		}
		if err == nil && matchLabels(reqs, labels) != tt.match {
			t.Errorf("%q: match %v, want %v", tt.sel, !tt.match, tt.match)
		}
	}
}

// FuzzLabelSelector: any input is refused or parsed into terms of valid
// keys and values, never more than the bounds, and matching never panics.
func FuzzLabelSelector(f *testing.F) {
	for _, s := range []string{"app=agent", "a!=b,!c,d", "x==", "example.com/tier=web", "!", "=,", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		reqs, err := parseLabelSelector(s)
		if err != nil {
			return
		}
		if len(reqs) > maxLabelTerms {
			t.Fatalf("%d terms", len(reqs))
		}
		for _, r := range reqs {
			if !validLabelKey(r.key) || !validLabelValue(r.value) || strings.ContainsAny(r.key+r.value, ",=! ") {
				t.Fatalf("%q: term %+v", s, r)
			}
		}
		matchLabels(reqs, []resolver.Label{{Key: "a", Value: "b"}, {Key: "c", Value: ""}})
	})
}
