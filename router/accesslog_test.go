package router

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain/path", "quote\"back\\slash", "line\nbreak\r\t\x00\x1f", "ünïcode ✓", "bad\xffutf8\xc3"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: invalid JSON: %v", s, b, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("%q round-tripped to %q", s, got)
		}
	}
}

// FuzzAppendJSONString: whatever a client puts in a path, the access-log
// line stays one valid JSON value.
func FuzzAppendJSONString(f *testing.F) {
	f.Add("/a\"b\n")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		for _, c := range b {
			if c == '\n' {
				t.Fatal("newline in output")
			}
		}
	})
}
