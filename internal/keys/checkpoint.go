package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

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
	return &CheckpointKey{priv: priv, jwk: jwk}, nil
}

// Sign signs msg.
func (k *CheckpointKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// KeyID is the thumbprint of the public key.
func (k *CheckpointKey) KeyID() string { return k.jwk.KeyID }

// Public is the verification key.
func (k *CheckpointKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// JWK is the public key as a JWK (OKP, EdDSA).
func (k *CheckpointKey) JWK() jose.JSONWebKey { return k.jwk }
