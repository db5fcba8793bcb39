# stationfleet: see README.md. Every target runs on a machine with Go and the
# Go module proxy; `make tools` builds the pinned Kubernetes binaries.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(BIN)/controller-gen
export KUBEBUILDER_ASSETS ?= $(BIN)
export AZURITE_BLOB ?= $(CURDIR)/hack/azurite/node_modules/.bin/azurite-blob
GO_TEST_FLAGS ?= -count=1 -timeout 30m
FUZZTIME ?= 10s

.PHONY: all
all: build

##@ Development

.PHONY: tools
tools: ## Build the pinned kube-apiserver, etcd, kubectl and controller-gen into bin/ (cached by version).
	hack/tools/build.sh

.PHONY: azurite
azurite: ## Install Azurite (npm) into hack/azurite for the Blob Storage tests.
	hack/azurite/install.sh

.PHONY: helm
helm: ## Build the pinned helm into bin/ (cached by version; hack/helm), for the chart tests.
	hack/helm/build.sh

.PHONY: chart-sync
chart-sync: ## Copy the CRD, alert rules and Grafana dashboard into the Helm chart and config/prometheus's PrometheusRule.
	hack/helm/sync.sh

.PHONY: iothub-sdk
iothub-sdk: ## Install Microsoft's azure-iothub SDK (npm) into hack/iothub-sdk for the IoT Hub emulator's check.
	hack/iothub-sdk/install.sh

.PHONY: manifests
manifests: tools ## Generate the CRD and RBAC manifests from the API markers.
	$(CONTROLLER_GEN) crd rbac:roleName=manager-role paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) webhook paths=./internal/admission/... output:webhook:artifacts:config=config/webhook
	hack/helm/sync.sh

.PHONY: generate
generate: tools ## Generate the deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: fmt
fmt: ## gofmt the tree.
	go fmt ./...

.PHONY: vet
vet: ## go vet the tree.
	go vet ./...

.PHONY: lint
lint: vet ## gofmt check and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

.PHONY: verify
verify: manifests generate ## Fail when generated files are stale.
	@git diff --exit-code -- config/crd config/rbac config/webhook config/prometheus charts api || { echo "generated files are stale: run make manifests generate and commit"; exit 1; }

.PHONY: build
build: ## Build the manager and the CLI into bin/.
	go build -o $(BIN)/manager ./cmd/manager

.PHONY: iothub-emulator
iothub-emulator: ## Run the IoT Hub emulator on its own (EMULATOR_FLAGS="--addr 127.0.0.1:443 --state-dir .iothub-emulator").
	go build -o $(BIN)/iothub-emulator ./cmd/iothub-emulator
	$(BIN)/iothub-emulator $(EMULATOR_FLAGS)

.PHONY: test
test: tools helm azurite iothub-sdk lint verify ## Run every test against the real API server, Azurite and the IoT Hub emulator.
	go test $(GO_TEST_FLAGS) ./...

.PHONY: demo
demo: tools ## Run a whole fleet rollout on this machine (DEMO_FLAGS="--stations 200 --keep-state .demo" etc.).
	go build -o $(BIN)/demo ./cmd/demo
	$(BIN)/demo $(DEMO_FLAGS)

.PHONY: bench
bench: tools ## Measure every performance target of DESIGN.md section 9 beside its baseline (3-6 min on 2 cores); table on stdout and in $(BIN)/bench-results.txt.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/stationfleet-bench ./cmd/stationfleet-bench
	go test -c -o $(BIN)/cups.test ./internal/cups
	$(BIN)/stationfleet-bench -manager $(BIN)/manager -cups-test $(BIN)/cups.test -out $(BIN)/bench-results.txt $(BENCH_FLAGS)

SCALE_SIZES ?= 10000,100000
.PHONY: bench-scale
bench-scale: tools ## The scale curve: rollouts of SCALE_SIZES stations (add 1000000 for the 1M point: long) against the emulator; table in $(BIN)/bench-scale.txt.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/stationfleet-bench ./cmd/stationfleet-bench
	$(BIN)/stationfleet-bench -manager $(BIN)/manager -rows scale -scale-sizes $(SCALE_SIZES) -out $(BIN)/bench-scale.txt $(BENCH_FLAGS)

SOAK_DURATION ?= 5m
SOAK_STATIONS ?= 1000

.PHONY: soak
soak: tools azurite ## Run the fault-injection soak for SOAK_DURATION of faults (the test run has a one-minute version).
	SOAK_DURATION=$(SOAK_DURATION) SOAK_STATIONS=$(SOAK_STATIONS) go test -count=1 -v -timeout 60m -run '^TestSoak$$' ./test/soak/

.PHONY: test-e2e
test-e2e: tools azurite ## Run only the end-to-end tests (the manager binary as a process).
	go test $(GO_TEST_FLAGS) ./test/e2e/...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each.
	hack/fuzz.sh $(FUZZTIME)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
