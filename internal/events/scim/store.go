package scim

import (
	"context"
	"errors"
)

// ErrNotFound and ErrConflict are the store's refusals.
var (
	ErrNotFound = errors.New("scim: not found")
	ErrConflict = errors.New("scim: conflict")
)

// Store keeps SCIM resources as JSON documents with revisions, and the
// unique index of userNames.
type Store interface {
	Get(ctx context.Context, id string) (doc []byte, rev uint64, err error)
	// Create stores a new document; it fails with ErrConflict if the
	// unique key (a lower-cased userName) is taken.
	Create(ctx context.Context, id, unique string, doc []byte) error
	// Update replaces the document if rev is still current (ErrConflict
	// otherwise).
	Update(ctx context.Context, id string, doc []byte, rev uint64) error
	// Rename moves the unique key.
	Rename(ctx context.Context, id, oldUnique, newUnique string) error
	Delete(ctx context.Context, id, unique string) error
	// List returns every document with its revision.
	List(ctx context.Context) ([]Stored, error)
}

// Stored is a document and its revision (its meta.version).
type Stored struct {
	Doc []byte
	Rev uint64
}
