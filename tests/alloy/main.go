// alloy-syntax-check parses Alloy configuration files with Alloy's own parser
// (github.com/grafana/alloy/syntax) and exits non-zero, naming file, line and column, on the
// first syntax error. The role tests run it on the configuration the alloy role renders.
package main

import (
	"fmt"
	"os"

	"github.com/grafana/alloy/syntax/parser"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: alloy-syntax-check FILE...")
		os.Exit(2)
	}
	failed := false
	for _, name := range os.Args[1:] {
		src, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		file, err := parser.ParseFile(name, src)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
			continue
		}
		fmt.Printf("%s: ok (%d top-level statements)\n", name, len(file.Body))
	}
	if failed {
		os.Exit(1)
	}
}
