package scim

import (
	"context"
	"errors"
	"sync"
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
	// Create stores a new document and returns its revision; it fails
	// with ErrConflict if the unique key (a lower-cased userName) is taken.
	Create(ctx context.Context, id, unique string, doc []byte) (uint64, error)
	// Update replaces the document if rev is still current (ErrConflict
	// otherwise) and returns the new revision. Callers answer from what
	// they wrote and the revision returned, never by reading it back: on a
	// cluster a read may be served by a replica that has not applied the
	// write yet.
	Update(ctx context.Context, id string, doc []byte, rev uint64) (uint64, error)
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

// MemoryStore is a Store in memory: for tests and a single process
// that may forget its SCIM resources on restart.
type MemoryStore struct {
	mu    sync.Mutex
	docs  map[string][]byte
	revs  map[string]uint64
	names map[string]string
	seq   uint64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{docs: map[string][]byte{}, revs: map[string]uint64{}, names: map[string]string{}}
}

// Get returns a document and its revision.
func (m *MemoryStore) Get(_ context.Context, id string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[id]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return d, m.revs[id], nil
}

// Create stores a new document under a free unique key.
func (m *MemoryStore) Create(_ context.Context, id, unique string, doc []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, taken := m.names[unique]; taken && unique != "" {
		return 0, ErrConflict
	}
	if _, exists := m.docs[id]; exists {
		return 0, ErrConflict
	}
	m.seq++
	if unique != "" {
		m.names[unique] = id
	}
	m.docs[id], m.revs[id] = doc, m.seq
	return m.seq, nil
}

// Update replaces a document at its current revision.
func (m *MemoryStore) Update(_ context.Context, id string, doc []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.docs[id]; !ok {
		return 0, ErrNotFound
	}
	if m.revs[id] != rev {
		return 0, ErrConflict
	}
	m.seq++
	m.docs[id], m.revs[id] = doc, m.seq
	return m.seq, nil
}

// Rename moves the unique key.
func (m *MemoryStore) Rename(_ context.Context, id, o, n string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, taken := m.names[n]; taken {
		return ErrConflict
	}
	delete(m.names, o)
	m.names[n] = id
	return nil
}

// Delete removes a document and frees its unique key.
func (m *MemoryStore) Delete(_ context.Context, id, unique string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.docs, id)
	delete(m.revs, id)
	if m.names[unique] == id {
		delete(m.names, unique)
	}
	return nil
}

// List returns every document with its revision.
func (m *MemoryStore) List(context.Context) ([]Stored, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Stored
	for id, d := range m.docs {
		out = append(out, Stored{Doc: d, Rev: m.revs[id]})
	}
	return out, nil
}
