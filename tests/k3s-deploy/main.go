// k3s-deploy applies every manifest file of a folder to the cluster the way k3s does at each
// start: k3s's deploy controller (pkg/deploy) reads each .yaml/.yml/.json file of
// /var/lib/rancher/k3s/server/manifests and applies its objects with wrangler's apply, a
// three-way merge keyed by an object set per file, kube-system when a file names no namespace.
//
//	KUBECONFIG=… k3s-deploy FOLDER
//
// It is wrangler's own apply (github.com/rancher/wrangler/v3/pkg/apply), the library k3s uses;
// what it cannot show is the rest of k3s's controller: the Addon object each file gets as the
// owner of its set, the checksums that skip unchanged files after the first pass, and the
// removal of objects when a file is deleted.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rancher/wrangler/v3/pkg/apply"
	"github.com/rancher/wrangler/v3/pkg/yaml"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: k3s-deploy FOLDER")
		os.Exit(2)
	}
	if err := deploy(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func deploy(folder string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return err
	}
	applier, err := apply.NewForConfig(cfg)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(folder)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(folder, name))
		if err != nil {
			return err
		}
		objects, err := yaml.ToObjects(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		set := "addon-" + strings.TrimSuffix(name, filepath.Ext(name))
		err = applier.WithSetID(set).WithDynamicLookup().WithDefaultNamespace("kube-system").
			ApplyObjects(objects...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("%s: applied %d objects\n", name, len(objects))
	}
	return nil
}
