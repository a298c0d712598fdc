// Command argocd is Argo CD's own multi-call binary cut down to what the test cluster runs:
// the application controller, the repo-server, the API server, the git askpass helper the
// repo-server calls back (as "argocd" with ARGOCD_BINARY_NAME set), and the one CLI command
// the chart's redis-secret-init Job runs (`argocd admin redis-initial-password`). Leaving out
// the rest of the CLI, Dex, notifications and the ApplicationSet controller keeps the build
// smaller; each command below is upstream's, unchanged.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	apiserver "github.com/argoproj/argo-cd/v3/cmd/argocd-server/commands"
	"github.com/argoproj/argo-cd/v3/cmd/argocd/commands/admin"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	name := filepath.Base(os.Args[0])
	if v := os.Getenv("ARGOCD_BINARY_NAME"); v != "" {
		name = v
	}
	commands := map[string]func() *cobra.Command{
		"argocd-application-controller": appcontroller.NewCommand,
		"argocd-repo-server":            reposerver.NewCommand,
		"argocd-server":                 apiserver.NewCommand,
		"argocd-git-ask-pass":           gitaskpass.NewCommand,
		"argocd":                        redisSecretInit,
	}
	newCommand, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: run as one of argocd-application-controller, argocd-repo-server, "+
			"argocd-server, argocd-git-ask-pass, argocd (by file name or ARGOCD_BINARY_NAME)\n", name)
		os.Exit(2)
	}
	if err := newCommand().Execute(); err != nil {
		os.Exit(1)
	}
}

// redisSecretInit is `argocd admin redis-initial-password` and nothing else of the CLI.
func redisSecretInit() *cobra.Command {
	root := &cobra.Command{Use: "argocd"}
	adminCommand := &cobra.Command{Use: "admin"}
	adminCommand.AddCommand(admin.NewRedisInitialPasswordCommand())
	root.AddCommand(adminCommand)
	return root
}
