package images

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// The Dockerfile cannot be built on machines without Docker; this holds
// it to the image this package builds: the same compiler flags, a final
// stage from scratch with no RUN (there is no shell to run it), the same
// files, user, ports and entrypoint.
func TestDockerfileEquivalent(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Instructions, with continuation lines joined and comments dropped.
	var instrs []string
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur += more
			continue
		}
		if cur += line; cur != "" {
			instrs = append(instrs, strings.Join(strings.Fields(cur), " "))
		}
		cur = ""
	}
	last := slices.IndexFunc(instrs, func(s string) bool { return s == "FROM scratch" })
	if last < 0 {
		t.Fatalf("no final stage FROM scratch in %q", instrs)
	}
	build, final := instrs[:last], instrs[last+1:]

	goBuild := slices.IndexFunc(build, func(s string) bool { return strings.HasPrefix(s, "RUN ") && strings.Contains(s, "go build") })
	if goBuild < 0 {
		t.Fatal("no RUN go build in the build stage")
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOAMD64=v1", "GOARM64=v8.0", "-trimpath", "-buildvcs=true", `-ldflags="-s -w"`, "./cmd/sandbox-router"} {
		if !strings.Contains(build[goBuild], want) {
			t.Errorf("the go build lacks %s: %s", want, build[goBuild])
		}
	}

	wantFinal := []string{
		"COPY --from=build --chmod=0644 " + CABundlePath + " " + CABundlePath,
		"COPY --chmod=0644 images/files/passwd images/files/group /etc/",
		"COPY --from=build --chmod=0755 /out/sandbox-router " + EntrypointPath,
		fmt.Sprintf("USER %d:%d", UID, GID),
		"EXPOSE " + strings.Join(portNumbers(), " "),
		`ENTRYPOINT ["` + EntrypointPath + `"]`,
	}
	if !slices.Equal(final, wantFinal) {
		t.Errorf("final stage:\n%s\nwant:\n%s", strings.Join(final, "\n"), strings.Join(wantFinal, "\n"))
	}
}

func portNumbers() []string {
	var out []string
	for _, p := range exposedPorts {
		out = append(out, strings.TrimSuffix(p, "/tcp"))
	}
	return out
}
