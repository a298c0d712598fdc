# Thin wrappers: the logic lives in scripts/ and the Python package.
.PHONY: run test lint bench image deploy cluster-up cluster-down

run: ## start TaskPlaner on http://127.0.0.1:8080 with its data in ./data
	scripts/bootstrap.sh app
	TASKPLANER_DATA_DIR=$${TASKPLANER_DATA_DIR:-./data} .venv/bin/taskplaner serve

test: ## install everything the suite needs, then run all of it
	scripts/bootstrap.sh test
	scripts/test.sh

lint: ## ruff, yamllint, ansible-lint (production profile)
	scripts/bootstrap.sh test
	scripts/lint.sh

image: ## build the app's container image (podman, or docker) as localhost/taskplaner:dev
	scripts/bootstrap.sh image
	scripts/image.sh build

bench: ## benchmarks under bench/ (not tests); prints the README table rows
	scripts/bootstrap.sh bench
	.venv/bin/python bench/run.py

# ARGS adds ansible-playbook arguments (ARGS="--check --diff" previews). The vault password is
# asked for, unless ANSIBLE_VAULT_PASSWORD_FILE names a file (or a script) that gives it.
deploy: ## the whole platform on the hosts in inventory/hosts.yml
	scripts/bootstrap.sh deploy
	.venv/bin/ansible-playbook site.yml $(if $(ANSIBLE_VAULT_PASSWORD_FILE),,--ask-vault-pass) $(ARGS)

cluster-up: ## start the local test cluster (Kubernetes API + kwok + Gitea) and print how to use it
	scripts/bootstrap.sh test
	tests/cluster/cluster.sh up

cluster-down: ## stop the local test cluster
	tests/cluster/cluster.sh down
