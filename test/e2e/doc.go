// Package e2e tests stationfleet as a user runs it: the manager binary built
// from ./cmd/manager runs as a separate process against a real
// kube-apiserver and etcd (envtest), an IoT Hub emulator reached over HTTPS,
// firmware in Azurite, and simulated Basics Stations polling its CUPS
// server on loopback. Tests drive it only through the Kubernetes API and
// kubectl, and check the results both in the rollout's status and in the
// stations' device twins, read through the real IoT Hub client.
//
// Run it with `make test` (or `KUBEBUILDER_ASSETS=$PWD/bin go test
// ./test/e2e/`). It needs the binaries of `make tools` (kube-apiserver,
// etcd, kubectl in bin/) and `make azurite`; when one is missing the tests
// fail with a message that says which target to run. Set
// STATIONFLEET_TEST_LOG=1 to print every manager log, not only the tail of a
// failed test's.
package e2e
