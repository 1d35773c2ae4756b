package main

import (
	"context"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

// checkCompose loads a compose file as `docker compose config` does: the
// compose specification's JSON schema, then the model (references between
// services, volumes and networks, durations, ports). Variables without a
// default are left empty rather than read from this machine's environment.
func checkCompose(path string) ([]string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	options, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithName("taskmesh"),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	if _, err := options.LoadProject(context.Background()); err != nil {
		return []string{abs + ": " + err.Error()}, nil
	}
	return nil, nil
}
