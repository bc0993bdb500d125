package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Files sessionbus certs writes.
const (
	certCA        = "ca.pem"
	certCAKey     = "ca-key.pem"
	certServer    = "server.pem"
	certServerKey = "server-key.pem"
)

func newCertsCmd() *cobra.Command {
	var out string
	var hosts []string
	var valid time.Duration
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a CA and a server certificate for a local NATS cluster (client and route TLS)",
		Long: `Create the TLS material of a local or test NATS cluster in --out:

  ca.pem          the CA certificate: clients check the servers against it
                  (sessionbus --nats-ca, SSL_CERT_FILE for example-service,
                  nats --tlsca), and the servers check each other's routes
  ca-key.pem      the CA key (0600): keep it off the servers; only needed
                  to issue more certificates
  server.pem      one certificate for every server, naming each of --hosts,
                  good for serving clients and for routes in both directions
  server-key.pem  its key (0600): a secret of the servers

Existing files are never overwritten. ECDSA P-256 keys, made with Go's
crypto. For production use your organisation's CA, with a certificate per
server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" || len(hosts) == 0 {
				return errors.New("--out and --hosts are required")
			}
			if err := makeCerts(out, hosts, valid); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s, %s and %s in %s for %s\n", certCA, certCAKey, certServer, certServerKey, out, strings.Join(hosts, ", "))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "directory to write the files to (created 0700)")
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "DNS names and IP addresses of the servers, comma separated (e.g. nats-1,nats-2,nats-3,localhost,127.0.0.1)")
	cmd.Flags().DurationVar(&valid, "valid-for", 365*24*time.Hour, "validity of the certificates")
	return cmd
}

func makeCerts(dir string, hosts []string, valid time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{certCA, certCAKey, certServer, certServerKey} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s exists: certs never overwrites (use another --out)", filepath.Join(dir, f))
		}
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "sessionbus NATS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid),
		KeyUsage: x509.KeyUsageDigitalSignature,
		// Routes connect both ways: each server is a client of the others.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{certCAKey, "EC PRIVATE KEY", caKeyDER, 0o600},
		{certCA, "CERTIFICATE", caDER, 0o644},
		{certServerKey, "EC PRIVATE KEY", keyDER, 0o600},
		{certServer, "CERTIFICATE", der, 0o644},
	} {
		fh, err := os.OpenFile(filepath.Join(dir, f.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return err
		}
		if err := pem.Encode(fh, &pem.Block{Type: f.typ, Bytes: f.der}); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}
