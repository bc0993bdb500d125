// Package deploy holds the deployment files of sessionbus and the tests
// that keep them true: the 3-node NATS cluster configuration with per-role
// permissions (nats/), systemd units (systemd/), the container image and
// compose file (docker/) and Kubernetes manifests (kubernetes/). It has no
// Go API; deploy_test.go parses every file with the parser of the program
// that reads it, starts a real NATS cluster from the configs and proves
// each role's permissions, and checks that every flag and environment
// variable the files set exists in the sessionbus binary.
package deploy
