package fingerprint

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"time"
)

// Tags of the canonical encoding; see the package documentation.
const (
	tagNil       = 0x00
	tagFalse     = 0x01
	tagTrue      = 0x02
	tagInt       = 0x03
	tagUint      = 0x04
	tagFloat     = 0x05
	tagComplex   = 0x06
	tagString    = 0x07
	tagBytes     = 0x08
	tagTime      = 0x09
	tagList      = 0x0a
	tagMap       = 0x0b
	tagStruct    = 0x0c
	tagMarshaled = 0x0d
)

// canonicalNaN is the one bit pattern every NaN is written as.
const canonicalNaN = 0x7ff8000000000001

// cycleCheckDepth is the nesting depth after which the encoder starts
// remembering the pointers, maps and slices on its path to detect cycles;
// shallower values pay nothing for the check.
const cycleCheckDepth = 1000

// Size is the length of a Fingerprint in bytes.
const Size = sha256.Size

// ErrUnsupported is wrapped by the error returned for a value that has no
// canonical encoding: a channel, a function, an unsafe pointer, a struct with
// only unexported fields and no marshaler, or a reference cycle.
var ErrUnsupported = errors.New("fingerprint: unsupported value")

// Fingerprint is the SHA-256 digest of a value's canonical encoding.
type Fingerprint [Size]byte

// String returns the fingerprint in lowercase hexadecimal.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// Bytes returns a copy of the fingerprint as a byte slice.
func (f Fingerprint) Bytes() []byte { return slices.Clone(f[:]) }

// Of returns the fingerprint of v. It is a shorthand for a new Hasher's Sum;
// code that fingerprints many values in a loop should keep a Hasher.
func Of(v any) (Fingerprint, error) {
	var h Hasher
	return h.Sum(v)
}

// Append appends the canonical encoding of v to dst and returns the extended
// slice.
func Append(dst []byte, v any) ([]byte, error) {
	e := encoder{buf: dst}
	if err := e.value(reflect.ValueOf(v), 0); err != nil {
		return dst, err
	}
	return e.buf, nil
}

// Hasher fingerprints values, reusing its encoding buffer between calls. The
// zero value is ready to use. A Hasher is not safe for concurrent use.
type Hasher struct {
	buf []byte
	n   int
}

// Sum returns the fingerprint of v.
func (h *Hasher) Sum(v any) (Fingerprint, error) {
	buf, err := Append(h.buf[:0], v)
	if err != nil {
		return Fingerprint{}, err
	}
	h.n = len(buf)
	// Keep a buffer for the next call unless this value was unusually large.
	if cap(buf) <= 1<<20 {
		h.buf = buf
	} else {
		h.buf = nil
	}
	return sha256.Sum256(buf), nil
}

// Len returns the length in bytes of the canonical encoding of the value the
// last successful Sum fingerprinted: a cheap measure of the value's size.
func (h *Hasher) Len() int { return h.n }

var (
	timeType          = reflect.TypeFor[time.Time]()
	binaryMarshalerTy = reflect.TypeFor[encoding.BinaryMarshaler]()
	textMarshalerTy   = reflect.TypeFor[encoding.TextMarshaler]()
)

type encoder struct {
	buf  []byte
	seen map[uintptr]struct{} // pointers on the current path, past cycleCheckDepth
}

func (e *encoder) tag(t byte) { e.buf = append(e.buf, t) }

func (e *encoder) uvarint(n int) { e.buf = binary.AppendUvarint(e.buf, uint64(n)) }

func (e *encoder) u64(n uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, n) }

func (e *encoder) float(f float64) {
	switch {
	case math.IsNaN(f):
		e.u64(canonicalNaN)
	case f == 0:
		e.u64(0) // folds -0 into +0
	default:
		e.u64(math.Float64bits(f))
	}
}

func (e *encoder) bytesBody(b []byte) {
	e.uvarint(len(b))
	e.buf = append(e.buf, b...)
}

func (e *encoder) value(v reflect.Value, depth int) error {
	if !v.IsValid() {
		e.tag(tagNil)
		return nil
	}
	t := v.Type()
	if t == timeType {
		tm := v.Interface().(time.Time)
		e.tag(tagTime)
		e.u64(uint64(tm.Unix()))
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(tm.Nanosecond()))
		return nil
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			e.tag(tagTrue)
		} else {
			e.tag(tagFalse)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.tag(tagInt)
		e.u64(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.tag(tagUint)
		e.u64(v.Uint())
	case reflect.Float32, reflect.Float64:
		e.tag(tagFloat)
		e.float(v.Float())
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		e.tag(tagComplex)
		e.float(real(c))
		e.float(imag(c))
	case reflect.String:
		e.tag(tagString)
		e.uvarint(v.Len())
		e.buf = append(e.buf, v.String()...)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			e.tag(tagNil)
			return nil
		}
		if v.Kind() == reflect.Interface {
			return e.value(v.Elem(), depth+1)
		}
		return e.guarded(v, depth, func() error { return e.value(v.Elem(), depth+1) })
	case reflect.Slice:
		if v.IsNil() {
			e.tag(tagNil)
			return nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			e.tag(tagBytes)
			e.bytesBody(v.Bytes())
			return nil
		}
		return e.guarded(v, depth, func() error { return e.list(v, depth) })
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			e.tag(tagBytes)
			e.uvarint(v.Len())
			for i := range v.Len() {
				e.buf = append(e.buf, byte(v.Index(i).Uint()))
			}
			return nil
		}
		return e.list(v, depth)
	case reflect.Map:
		if v.IsNil() {
			e.tag(tagNil)
			return nil
		}
		return e.guarded(v, depth, func() error { return e.mapValue(v, depth) })
	case reflect.Struct:
		return e.structValue(v, depth)
	default:
		return fmt.Errorf("%w: %s", ErrUnsupported, t)
	}
	return nil
}

// guarded runs encode for a pointer, slice or map, detecting reference cycles
// once the encoder is deeper than cycleCheckDepth.
func (e *encoder) guarded(v reflect.Value, depth int, encode func() error) error {
	if depth < cycleCheckDepth {
		return encode()
	}
	// A slice is identified by its data pointer and length, so that
	// different-length views of one array are not mistaken for a cycle.
	ptr := v.Pointer()
	if v.Kind() == reflect.Slice {
		ptr ^= uintptr(v.Len()) << 48
	}
	if e.seen == nil {
		e.seen = make(map[uintptr]struct{})
	}
	if _, ok := e.seen[ptr]; ok {
		return fmt.Errorf("%w: reference cycle through %s", ErrUnsupported, v.Type())
	}
	e.seen[ptr] = struct{}{}
	err := encode()
	delete(e.seen, ptr)
	return err
}

func (e *encoder) list(v reflect.Value, depth int) error {
	e.tag(tagList)
	e.uvarint(v.Len())
	for i := range v.Len() {
		if err := e.value(v.Index(i), depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) mapValue(v reflect.Value, depth int) error {
	type entry struct {
		key []byte
		val reflect.Value
	}
	entries := make([]entry, 0, v.Len())
	sub := encoder{seen: e.seen}
	iter := v.MapRange()
	for iter.Next() {
		sub.buf = nil
		if err := sub.value(iter.Key(), depth+1); err != nil {
			return err
		}
		entries = append(entries, entry{key: sub.buf, val: iter.Value()})
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	e.tag(tagMap)
	e.uvarint(len(entries))
	for _, en := range entries {
		e.buf = append(e.buf, en.key...)
		if err := e.value(en.val, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) structValue(v reflect.Value, depth int) error {
	t := v.Type()
	fields := make([]int, 0, t.NumField())
	unexported := false
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			unexported = true
			continue
		}
		if f.Tag.Get("fingerprint") == "-" {
			continue
		}
		fields = append(fields, i)
	}
	if len(fields) == 0 && unexported {
		return e.marshaled(v)
	}
	e.tag(tagStruct)
	e.uvarint(len(fields))
	for _, i := range fields {
		name := t.Field(i).Name
		e.uvarint(len(name))
		e.buf = append(e.buf, name...)
		if err := e.value(v.Field(i), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// marshaled encodes an opaque struct through its BinaryMarshaler or
// TextMarshaler, looking for the methods on a pointer too.
func (e *encoder) marshaled(v reflect.Value) error {
	if !v.CanAddr() {
		p := reflect.New(v.Type())
		p.Elem().Set(v)
		v = p.Elem()
	}
	for _, candidate := range []reflect.Value{v, v.Addr()} {
		var (
			b   []byte
			err error
			ok  bool
		)
		switch {
		case candidate.Type().Implements(binaryMarshalerTy):
			b, err = candidate.Interface().(encoding.BinaryMarshaler).MarshalBinary()
			ok = true
		case candidate.Type().Implements(textMarshalerTy):
			b, err = candidate.Interface().(encoding.TextMarshaler).MarshalText()
			ok = true
		}
		if !ok {
			continue
		}
		if err != nil {
			return fmt.Errorf("fingerprint: marshaling %s: %w", v.Type(), err)
		}
		e.tag(tagMarshaled)
		e.bytesBody(b)
		return nil
	}
	return fmt.Errorf("%w: %s has only unexported fields and no BinaryMarshaler or TextMarshaler", ErrUnsupported, v.Type())
}
