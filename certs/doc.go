// Package certs is leasecluster's certificate handling, standard library
// only: key pairs and CA bundles that are re-read when their files change
// (so short-lived certificates rotate without a restart), the TLS
// configurations of a node and of its clients, the classification of a
// presented certificate as a peer's or a client's, and the generation of
// CAs and certificates for `leasecluster tls init` and for tests.
package certs
