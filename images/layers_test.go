package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2026, 12, 6, 3, 48, 28, 0, time.UTC)

type entry struct {
	name     string
	typeflag byte
	mode     int64
	size     int64
}

// readTar lists a compressed layer's entries and checks what every entry
// must have whatever it is: owner 0:0 without names, the one mtime, USTAR.
func readTar(t *testing.T, blob []byte, mtime time.Time) []entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" || zr.Comment != "" || zr.Extra != nil {
		t.Errorf("gzip header carries a time or a name: %+v", zr.Header)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 without names", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if !hdr.ModTime.Equal(mtime) || !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v, want mtime %v only", hdr.Name, hdr.ModTime, hdr.AccessTime, hdr.ChangeTime, mtime)
		}
		if hdr.Format != tar.FormatUSTAR || len(hdr.PAXRecords) > 0 {
			t.Errorf("%s: format %v, PAX %v; want plain USTAR", hdr.Name, hdr.Format, hdr.PAXRecords)
		}
		out = append(out, entry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Size})
	}
}

func TestLayerDeterministic(t *testing.T) {
	files := []File{
		{Path: "/sandbox-router", Mode: 0o755, Data: []byte("\x7fELF binary")},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: []byte("-----BEGIN CERTIFICATE-----\n")},
		{Path: "/etc/passwd", Mode: 0o644, Data: Passwd()},
		{Path: "/etc/group", Mode: 0o644, Data: Group()},
	}
	reversed := slices.Clone(files)
	slices.Reverse(reversed)

	blob, err := LayerBlob(files, testTime)
	if err != nil {
		t.Fatal(err)
	}
	// Another order, another time zone, a fraction of a second: the
	// same bytes.
	again, err := LayerBlob(reversed, testTime.In(time.FixedZone("X", 5*3600)).Add(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(blob, again) {
		t.Fatal("the same files in another order gave other bytes")
	}
	later, err := LayerBlob(files, testTime.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(blob, later) {
		t.Fatal("another mtime gave the same bytes: the mtime is not in the layer")
	}

	want := []entry{
		{"etc/", tar.TypeDir, 0o755, 0},
		{"etc/group", tar.TypeReg, 0o644, int64(len(Group()))},
		{"etc/passwd", tar.TypeReg, 0o644, int64(len(Passwd()))},
		{"etc/ssl/", tar.TypeDir, 0o755, 0},
		{"etc/ssl/certs/", tar.TypeDir, 0o755, 0},
		{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 28},
		{"sandbox-router", tar.TypeReg, 0o755, 11},
	}
	if got := readTar(t, blob, testTime); !slices.Equal(got, want) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}

	// The v1.Layer carries exactly those bytes, as an OCI layer.
	l1, err := Layer(files, testTime)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Layer(reversed, testTime)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l1.Digest()
	d2, _ := l2.Digest()
	id1, _ := l1.DiffID()
	id2, _ := l2.DiffID()
	if d1 != d2 || id1 != id2 {
		t.Errorf("digests %s/%s, diff IDs %s/%s", d1, d2, id1, id2)
	}
	rc, err := l1.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, blob) {
		t.Error("the layer's compressed bytes are not LayerBlob's")
	}
	if mt, _ := l1.MediaType(); mt != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("media type %s", mt)
	}
}

func TestLayerRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []File
	}{
		{"relative", []File{{Path: "etc/passwd", Mode: 0o644}}},
		{"unclean", []File{{Path: "/etc/../passwd", Mode: 0o644}}},
		{"root", []File{{Path: "/", Mode: fs.ModeDir | 0o755}}},
		{"twice", []File{{Path: "/a", Mode: 0o644}, {Path: "/a", Mode: 0o644}}},
		{"symlink", []File{{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777}}},
		{"setuid", []File{{Path: "/a", Mode: fs.ModeSetuid | 0o755}}},
		{"file as parent", []File{{Path: "/a", Mode: 0o644}, {Path: "/a/b", Mode: 0o644}}},
		{"directory with data", []File{{Path: "/a", Mode: fs.ModeDir | 0o755, Data: []byte("x")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LayerBlob(tc.files, testTime); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// passwdLines splits an /etc/passwd or /etc/group into fields.
func passwdLines(t *testing.T, data []byte, fields int) [][]string {
	t.Helper()
	var out [][]string
	lines := bufio.NewScanner(bytes.NewReader(data))
	for lines.Scan() {
		f := strings.Split(lines.Text(), ":")
		if len(f) != fields {
			t.Fatalf("line %q: %d fields, want %d", lines.Text(), len(f), fields)
		}
		out = append(out, f)
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Error("no final newline")
	}
	return out
}

func TestPasswd(t *testing.T) {
	groups := map[string]string{} // gid -> name
	for _, g := range passwdLines(t, Group(), 4) {
		if _, dup := groups[g[2]]; dup {
			t.Errorf("gid %s twice", g[2])
		}
		groups[g[2]] = g[0]
	}
	users := map[string][]string{}
	uids := map[string]bool{}
	for _, u := range passwdLines(t, Passwd(), 7) {
		users[u[0]] = u
		if uids[u[2]] {
			t.Errorf("uid %s twice", u[2])
		}
		uids[u[2]] = true
		if u[1] != "x" {
			t.Errorf("%s: password field %q, want x", u[0], u[1])
		}
		// The image has no shell; no account pretends to have one.
		if u[6] != "/sbin/nologin" {
			t.Errorf("%s: shell %q, want /sbin/nologin", u[0], u[6])
		}
		if _, ok := groups[u[3]]; !ok {
			t.Errorf("%s: primary group %s not in /etc/group", u[0], u[3])
		}
	}
	nonroot, ok := users["nonroot"]
	if !ok {
		t.Fatal("no nonroot user")
	}
	if nonroot[2] != strconv.Itoa(UID) || nonroot[3] != strconv.Itoa(GID) || groups[strconv.Itoa(GID)] != "nonroot" {
		t.Errorf("nonroot is %v (group %q), want %d:%d nonroot", nonroot, groups[strconv.Itoa(GID)], UID, GID)
	}
	if root := users["root"]; root == nil || root[2] != "0" {
		t.Errorf("root is %v", root)
	}
}
