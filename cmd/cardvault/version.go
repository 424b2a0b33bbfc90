package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version, the source commit and its time, and the Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, ok := debug.ReadBuildInfo()
			if !ok {
				info = &debug.BuildInfo{GoVersion: runtime.Version()}
			}
			return printVersion(cmd.OutOrStdout(), buildVersion(info))
		},
	}
}

// version is what `cardvault version` reports.
type version struct {
	Module   string // the module version, e.g. v1.2.0, or "(devel)"
	Commit   string // the VCS revision, "" when not stamped
	Time     string // the commit time (RFC 3339), "" when not stamped
	Modified bool   // the working tree had uncommitted changes
	Go       string // the Go toolchain that built the binary
	Platform string // GOOS/GOARCH
}

// buildVersion reads the version from the build information Go embeds.
func buildVersion(info *debug.BuildInfo) version {
	v := version{Module: info.Main.Version, Go: info.GoVersion, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if v.Module == "" {
		v.Module = "(devel)"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// printVersion writes v as three lines; it returns the writer's error.
func printVersion(w io.Writer, v version) error {
	commit := "unknown (built without VCS information, e.g. -buildvcs=false or outside a git checkout)"
	if v.Commit != "" {
		commit = v.Commit
		if v.Time != "" {
			commit += " (" + v.Time + ")"
		}
		if v.Modified {
			commit += ", with uncommitted changes"
		}
	}
	_, err := fmt.Fprintf(w, "cardvault %s\ncommit    %s\ngo        %s %s\n", v.Module, commit, v.Go, v.Platform)
	return err
}
