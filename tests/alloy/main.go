// alloy-syntax-check parses Alloy configuration files with Alloy's own parser
// (github.com/grafana/alloy/syntax) and exits non-zero, naming file, line and column, on the
// first syntax error. The role tests run it on the configuration the alloy role renders.
//
//	alloy-syntax-check FILE...
//	alloy-syntax-check -relabel COMPONENT FILE < targets.json
//
// With -relabel it evaluates the rule blocks of the discovery.relabel component named
// COMPONENT with Alloy's evaluator and applies them, in order, to each label set of the JSON
// array on stdin, printing the results as a JSON array (null for a dropped target). The rules
// run through Prometheus's relabel package (model/relabel): Alloy's discovery.relabel is a copy
// of it kept in an internal package that cannot be imported, with the same defaults
// (separator ";", regex "(.*)", replacement "$1", action "replace"). That is the part this
// check cannot show: a difference between Alloy's copy and Prometheus's original.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/grafana/alloy/syntax/ast"
	"github.com/grafana/alloy/syntax/parser"
	"github.com/grafana/alloy/syntax/vm"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// rule mirrors the arguments of Alloy's rule block (component/common/relabel.Config).
type rule struct {
	SourceLabels []string `alloy:"source_labels,attr,optional"`
	Separator    string   `alloy:"separator,attr,optional"`
	Regex        string   `alloy:"regex,attr,optional"`
	Modulus      uint64   `alloy:"modulus,attr,optional"`
	TargetLabel  string   `alloy:"target_label,attr,optional"`
	Replacement  string   `alloy:"replacement,attr,optional"`
	Action       string   `alloy:"action,attr,optional"`
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "-relabel" {
		if err := relabelTargets(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: alloy-syntax-check FILE... | -relabel COMPONENT FILE < targets.json")
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

func relabelTargets(component, name string) error {
	src, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	file, err := parser.ParseFile(name, src)
	if err != nil {
		return err
	}
	configs, err := rulesOf(file, component)
	if err != nil {
		return err
	}
	var targets []map[string]string
	if err := json.NewDecoder(os.Stdin).Decode(&targets); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	out := make([]map[string]string, len(targets))
	for i, target := range targets {
		builder := labels.NewBuilder(labels.FromMap(target))
		if relabel.ProcessBuilder(builder, configs...) {
			out[i] = builder.Labels().Map()
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func rulesOf(file *ast.File, component string) ([]*relabel.Config, error) {
	for _, stmt := range file.Body {
		block, ok := stmt.(*ast.BlockStmt)
		if !ok || strings.Join(block.Name, ".") != "discovery.relabel" || block.Label != component {
			continue
		}
		var configs []*relabel.Config
		for _, inner := range block.Body {
			ruleBlock, ok := inner.(*ast.BlockStmt)
			if !ok || strings.Join(ruleBlock.Name, ".") != "rule" {
				continue
			}
			r := rule{Separator: ";", Regex: "(.*)", Replacement: "$1", Action: "replace"}
			if err := vm.New(ruleBlock.Body).Evaluate(nil, &r); err != nil {
				return nil, err
			}
			regex, err := relabel.NewRegexp(r.Regex)
			if err != nil {
				return nil, err
			}
			cfg := &relabel.Config{
				SourceLabels: make(model.LabelNames, len(r.SourceLabels)), Separator: r.Separator,
				Regex: regex, Modulus: r.Modulus, TargetLabel: r.TargetLabel,
				Replacement: r.Replacement, Action: relabel.Action(r.Action),
				NameValidationScheme: model.UTF8Validation,
			}
			for i, l := range r.SourceLabels {
				cfg.SourceLabels[i] = model.LabelName(l)
			}
			if err := cfg.Validate(model.UTF8Validation); err != nil {
				return nil, err
			}
			configs = append(configs, cfg)
		}
		return configs, nil
	}
	return nil, fmt.Errorf("no discovery.relabel %q in %s", component, file.Name)
}
