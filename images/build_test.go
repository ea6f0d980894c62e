package images

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadCABundle(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(empty, []byte("# no certificates\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{empty, filepath.Join(dir, "missing.crt")} {
		if _, err := ReadCABundle(path); err == nil {
			t.Errorf("%s: accepted", filepath.Base(path))
		}
	}
	if _, err := os.Stat(CABundlePath); err != nil {
		t.Skipf("no %s on this machine (Debian's ca-certificates)", CABundlePath)
	}
	if _, err := ReadCABundle(CABundlePath); err != nil {
		t.Error(err)
	}
}
