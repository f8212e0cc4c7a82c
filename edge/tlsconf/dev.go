package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Dev file names written by GenerateDev in its directory.
const (
	DevCAFile   = "ca.pem"     // the development CA's certificate: give it to devices and simulators
	DevCAKey    = "ca-key.pem" // its key (kept to issue more node certificates)
	DevCertFile = "node.pem"   // the node's certificate (SPROUT_TLS_CERT)
	DevKeyFile  = "node-key.pem"
)

// DevFiles are the paths GenerateDev wrote.
type DevFiles struct{ CA, Cert, Key string }

// GenerateDev writes a development CA and a node certificate for hosts (DNS names and IP
// addresses) into dir, valid for validFor (0: one year). An existing CA in dir is reused, so
// devices that trust it keep trusting new node certificates. For development and tests only.
func GenerateDev(dir string, hosts []string, validFor time.Duration) (DevFiles, error) {
	if validFor <= 0 {
		validFor = 365 * 24 * time.Hour
	}
	if len(hosts) == 0 {
		return DevFiles{}, fmt.Errorf("no hosts: name at least one (localhost, 127.0.0.1)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return DevFiles{}, err
	}
	f := DevFiles{CA: filepath.Join(dir, DevCAFile), Cert: filepath.Join(dir, DevCertFile), Key: filepath.Join(dir, DevKeyFile)}
	now := time.Now()
	caCert, caKey, err := loadCA(f.CA, filepath.Join(dir, DevCAKey))
	if err != nil {
		caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return f, err
		}
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Sprout development CA"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * validFor), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			return f, err
		}
		if caCert, err = x509.ParseCertificate(der); err != nil {
			return f, err
		}
		if err := writePEM(f.CA, "CERTIFICATE", der, 0o644); err != nil {
			return f, err
		}
		kb, _ := x509.MarshalECPrivateKey(caKey)
		if err := writePEM(filepath.Join(dir, DevCAKey), "EC PRIVATE KEY", kb, 0o600); err != nil {
			return f, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validFor),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	// Key first, then the certificate: a watcher that sees the new certificate finds its key.
	if err := writePEM(f.Key, "EC PRIVATE KEY", kb, 0o600); err != nil {
		return f, err
	}
	return f, writePEM(f.Cert, "CERTIFICATE", der, 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func loadCA(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, fmt.Errorf("bad CA PEM in %s", certFile)
	}
	c, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParseECPrivateKey(kp.Bytes)
	return c, k, err
}

// writePEM writes atomically (a temporary file renamed over the old one).
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
