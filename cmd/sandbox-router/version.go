package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// runVersion is the version subcommand: the module version, the commit
// and the Go version the binary was built with, from its build info (the
// go command records them; nothing is stamped by hand).
func runVersion(args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return errors.New("takes no arguments")
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("the binary carries no build info")
	}
	fmt.Fprint(stdout, versionText(info))
	return nil
}

// versionText renders the build info: the module's version ("(devel)"
// for a build from a work tree), the VCS revision, its time and whether
// the tree had changes, and the Go version.
func versionText(info *debug.BuildInfo) string {
	setting := map[string]string{}
	for _, s := range info.Settings {
		setting[s.Key] = s.Value
	}
	revision := setting["vcs.revision"]
	if revision == "" {
		revision = "unknown"
	} else if setting["vcs.modified"] == "true" {
		revision += " (modified)"
	}
	out := fmt.Sprintf("sandbox-router %s\ncommit %s\n", info.Main.Version, revision)
	if t := setting["vcs.time"]; t != "" {
		out += "committed " + t + "\n"
	}
	return out + "go " + info.GoVersion + "\n"
}
