package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// CheckpointKey signs audit checkpoints (Ed25519). Its public half is in
// our JWKS, so that anyone holding a checkpoint can check it.
type CheckpointKey struct {
	priv ed25519.PrivateKey
	jwk  jose.JSONWebKey
}

// LoadOrCreateCheckpointKey loads the PEM Ed25519 key at path, generating it
// (mode 0600) when absent.
func LoadOrCreateCheckpointKey(path string) (*CheckpointKey, error) {
	raw, err := loadOrGenerate(path, func() (any, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	})
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("checkpoint key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse checkpoint key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("checkpoint key: %T is not Ed25519", k)
	}
	jwk, err := publicJWK(priv.Public(), "EdDSA")
	if err != nil {
		return nil, err
	}
	if err := writePublic(PublicKeyFile(path), priv.Public()); err != nil {
		return nil, err
	}
	return &CheckpointKey{priv: priv, jwk: jwk}, nil
}

// PublicKeyFile is where the public half of the key at path is written
// (checkpoint-key.pem → checkpoint-key.pub.pem). A verifier copies it
// away from this machine once and pins it: audit verify --public-key.
func PublicKeyFile(path string) string { return strings.TrimSuffix(path, ".pem") + ".pub.pem" }

func writePublic(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	want := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err := os.WriteFile(path, want, 0o644); err != nil {
		return fmt.Errorf("write checkpoint public key: %w", err)
	}
	return nil
}

// ParseCheckpointPublicKey reads pinned checkpoint keys: a PEM Ed25519
// public key, or a JWKS (its OKP Ed25519 keys; others are ignored).
func ParseCheckpointPublicKey(raw []byte) ([]ed25519.PublicKey, error) {
	if block, _ := pem.Decode(raw); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("checkpoint public key: a %s is not a public key (never pin a private key)", block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("checkpoint public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("checkpoint public key: %T is not Ed25519", k)
		}
		return []ed25519.PublicKey{pub}, nil
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("checkpoint public key: neither PEM nor a JWKS: %w", err)
	}
	var out []ed25519.PublicKey
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, errors.New("checkpoint public key: the JWKS holds a private key")
		}
		if pub, ok := k.Key.(ed25519.PublicKey); ok {
			out = append(out, pub)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("checkpoint public key: the JWKS has no Ed25519 key")
	}
	return out, nil
}

// Sign signs msg.
func (k *CheckpointKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// KeyID is the thumbprint of the public key.
func (k *CheckpointKey) KeyID() string { return k.jwk.KeyID }

// Public is the verification key.
func (k *CheckpointKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// JWK is the public key as a JWK (OKP, EdDSA).
func (k *CheckpointKey) JWK() jose.JSONWebKey { return k.jwk }
