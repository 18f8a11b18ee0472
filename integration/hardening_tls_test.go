package integration_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hdSelfSigned makes a self-signed certificate for 127.0.0.1 and localhost
// in memory and returns it with a pool that trusts it.
func hdSelfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "netmsg hardening test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// TestHardeningTLS: a wss:// session with a certificate made in the test; a
// client that does not trust it refuses to connect with a clear error.
func TestHardeningTLS(t *testing.T) {
	t.Parallel()
	cert, pool := hdSelfSigned(t)
	srv := hdStartServerOn(t, nettest.Listen{Wrap: func(l net.Listener) net.Listener {
		return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}})
	hdEchoHandler(srv.Server)
	require.Contains(t, srv.URL, "wss://")

	t.Run("trusted", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: pool}
		cli := nettest.Connect(t, srv.URL, netmsg.WithTLSConfig(cfg))
		ss := srv.NextOpen(t)
		r, err := netmsg.SendRequest(context.Background(), cli, hdEcho{Text: "over TLS"})
		require.NoError(t, err)
		assert.Equal(t, "over TLS", r.Text)
		assert.Empty(t, cfg.ServerName, "the caller's tls.Config was modified")

		// The server side really is TLS: the session's peer address is the
		// client's, and a plain ws:// client gets nowhere.
		assert.Equal(t, cli.Session().Context().Err(), nil)
		assert.NotNil(t, ss.RemoteAddr())
		plain := netmsg.NewClient("ws://"+srv.Addr+"/", netmsg.WithHandshakeTimeout(time.Second))
		defer plain.Close()
		assert.Error(t, plain.Connect(context.Background()), "a ws:// client on a TLS port")
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			opts []netmsg.ClientOption
		}{
			{"system roots", nil},
			{"empty pool", []netmsg.ClientOption{netmsg.WithTLSConfig(&tls.Config{RootCAs: x509.NewCertPool()})}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := netmsg.NewClient(srv.URL, tc.opts...)
				defer c.Close()
				err := c.Connect(context.Background())
				require.Error(t, err)
				var unknown x509.UnknownAuthorityError
				var verify *tls.CertificateVerificationError
				assert.True(t, errors.As(err, &unknown) || errors.As(err, &verify),
					"want an x509/TLS verification error, got %T: %v", err, err)
				assert.Contains(t, err.Error(), "TLS handshake")
				assert.Contains(t, err.Error(), "certificate")
				t.Logf("refused with: %v", err)
			})
		}
	})

	t.Run("wrong host name", func(t *testing.T) {
		c := netmsg.NewClient("wss://"+srv.Addr+"/", netmsg.WithTLSConfig(&tls.Config{RootCAs: pool, ServerName: "not-this-host.example"}))
		defer c.Close()
		err := c.Connect(context.Background())
		var host x509.HostnameError
		require.ErrorAs(t, err, &host, "got %v", err)
	})
	assert.Zero(t, len(srv.rec.Open), "sessions opened by refused clients")
}
