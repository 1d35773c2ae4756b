// Command taskmesh-check validates taskmesh's deployment files offline, the
// way the servers that take them would:
//
//	taskmesh-check k8s -crds DIR [FILE]   every object of a YAML stream (kustomize build's output; stdin without FILE)
//	taskmesh-check compose FILE           a compose file against the compose specification
//
// It prints one line per problem and exits 1 when there is any, 2 on a usage
// error.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var problems []string
	var err error
	switch os.Args[1] {
	case "k8s":
		problems, err = runK8s(os.Args[2:])
	case "compose":
		if len(os.Args) != 3 {
			usage()
		}
		problems, err = checkCompose(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "taskmesh-check: %v\n", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: taskmesh-check k8s -crds DIR [FILE] | taskmesh-check compose FILE")
	os.Exit(2)
}

// input is FILE, or stdin when none is given.
func input(args []string) ([]byte, error) {
	switch len(args) {
	case 0:
		return io.ReadAll(os.Stdin)
	case 1:
		return os.ReadFile(args[0])
	default:
		return nil, fmt.Errorf("expected at most one file, got %d", len(args))
	}
}
