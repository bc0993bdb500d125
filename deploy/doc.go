// Package deploy holds the deployment files of sessionbus and the tests
// that keep them true: the 3-node NATS cluster configuration with per-role
// permissions (nats/), systemd units (systemd/), the container image and
// compose file (docker/) and Kubernetes manifests (kubernetes/). It has no
// Go API. Its tests, one file per artifact and a subtest per rule, parse
// every file with the parser of the program that reads it, start a real
// NATS cluster from the configs and prove each role's permissions, and
// check that every flag and environment variable the files set exists in
// the sessionbus binary.
package deploy
