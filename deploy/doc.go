// Package deploy holds the deployment files of sessionbus and the tests
// that keep them true: the 3-node NATS cluster configuration (nats/) with
// the embedded server's account model (operator and account JWTs from
// `sessionbus auth`, a full resolver, route and client TLS, route
// passwords), systemd units (systemd/), the container image and compose
// file (docker/) and Kubernetes manifests (kubernetes/). It has no Go API.
// Its tests, one file per artifact and a subtest per rule, generate the
// trust files with the sessionbus binary, parse every file with the parser
// of the program that reads it, start a real NATS cluster from the configs
// and attack it with each identity, and check that every flag and
// environment variable the files set exists in the binaries.
package deploy
