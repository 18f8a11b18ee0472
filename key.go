package netmsg

import (
	"reflect"
	"sync"
	"sync/atomic"
)

// Key is a typed slot for a value kept per session: a player's name and
// room, a device's last reading, what a handler learned that later handlers
// need. Make one with NewKey, usually as a package-level variable, and use it
// with any session, on either end.
//
// A session's values live as long as the session: they are dropped once it
// has closed and its OnSessionClose callback has returned (on a client, once
// what arrived before the close has been handled), so OnSessionClose can
// still read them. After that Get reports false and Set does nothing. A
// session that never had a value set costs nothing beyond a nil pointer.
//
// All methods may be called concurrently, with the same or other sessions.
type Key[T any] struct {
	name string
	id   uint64
}

var keySeq atomic.Uint64

// NewKey returns a new key. Every call makes a distinct key, even with the
// same name; the name is for debugging.
func NewKey[T any](name string) *Key[T] {
	return &Key[T]{name: name, id: keySeq.Add(1)}
}

// Name returns the name the key was made with.
func (k *Key[T]) Name() string { return k.name }

// String returns the key's name and type, for debugging.
func (k *Key[T]) String() string {
	return "netmsg.Key[" + reflect.TypeFor[T]().String() + "](" + k.name + ")"
}

// Get returns the session's value for k, and whether it has one. A nil
// session has none.
func (k *Key[T]) Get(s *Session) (T, bool) {
	var zero T
	if s == nil {
		return zero, false
	}
	ext := s.ext.Load()
	if ext == nil || ext == &releasedExt {
		return zero, false
	}
	v, ok := ext.get(k.id)
	if !ok {
		return zero, false
	}
	return v.(T), true
}

// Set sets the session's value for k, replacing any earlier one. It panics
// if s is nil.
func (k *Key[T]) Set(s *Session, v T) {
	if s == nil {
		panic("netmsg: Key.Set on a nil *Session")
	}
	if ext := s.extension(); ext != nil {
		ext.set(k.id, v)
	}
}

// Delete removes the session's value for k.
func (k *Key[T]) Delete(s *Session) {
	if s == nil {
		return
	}
	ext := s.ext.Load()
	if ext == nil || ext == &releasedExt {
		return
	}
	ext.del(k.id)
}

// sessionExt is what the library keeps per session beyond the core: group
// membership and typed values. A session gets one on first use.
type sessionExt struct {
	// groups are the names of the session's groups, in joining order;
	// guarded by the server's groupSet.mu.
	groups []string

	mu   sync.Mutex
	vals []keyValue // few per session: a slice beats a map in size and speed
}

type keyValue struct {
	id uint64
	v  any
}

// releasedExt marks a session whose values have been dropped: nothing is
// stored in it, and extension never replaces it.
var releasedExt sessionExt

// extension returns the session's sessionExt, making it on first use, or nil
// once the session's values have been dropped.
func (s *Session) extension() *sessionExt {
	for {
		if ext := s.ext.Load(); ext != nil {
			if ext == &releasedExt {
				return nil
			}
			return ext
		}
		if ext := new(sessionExt); s.ext.CompareAndSwap(nil, ext) {
			return ext
		}
	}
}

// releaseExt drops the session's values once its close callbacks queued so
// far have run. The endpoint calls it once, when the session has drained.
func (s *Session) releaseExt() {
	if s.ext.CompareAndSwap(nil, &releasedExt) {
		return // never used: nothing to wait for
	}
	s.cbq.post("", func() { s.ext.Store(&releasedExt) })
}

func (e *sessionExt) get(id uint64) (any, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.vals {
		if e.vals[i].id == id {
			return e.vals[i].v, true
		}
	}
	return nil, false
}

func (e *sessionExt) set(id uint64, v any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.vals {
		if e.vals[i].id == id {
			e.vals[i].v = v
			return
		}
	}
	e.vals = append(e.vals, keyValue{id, v})
}

func (e *sessionExt) del(id uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.vals {
		if e.vals[i].id == id {
			last := len(e.vals) - 1
			e.vals[i] = e.vals[last]
			e.vals[last] = keyValue{}
			e.vals = e.vals[:last]
			if last == 0 {
				e.vals = nil
			}
			return
		}
	}
}

// valueCount reports how many values the session holds, for tests.
func (s *Session) valueCount() int {
	ext := s.ext.Load()
	if ext == nil || ext == &releasedExt {
		return 0
	}
	ext.mu.Lock()
	defer ext.mu.Unlock()
	return len(ext.vals)
}
