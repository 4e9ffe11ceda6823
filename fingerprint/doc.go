// Package fingerprint computes SHA-256 fingerprints of Go values over a
// canonical, documented encoding, so that the same logical value has the same
// fingerprint in every run, on every platform and in every later version of
// Tidemark. Tidemark uses fingerprints to tell whether a source row's content
// changed and whether a declared target state differs from what it wrote last.
//
// # Encoding
//
// A value is encoded as a tag byte followed by a body. Integers of every
// width share one tag, as do unsigned integers and floats, so int32(5) and
// int64(5) encode alike; a named type encodes like its underlying type.
//
//	0x00 nil        nil pointer, interface, map or slice (distinct from empty)
//	0x01 false
//	0x02 true
//	0x03 int        int, int8 … int64: 8 bytes, big-endian two's complement
//	0x04 uint       uint, uint8 … uint64, uintptr: 8 bytes, big-endian
//	0x05 float      float32, float64 as float64: 8 bytes, big-endian IEEE 754;
//	                -0 is written as +0 and every NaN as 0x7ff8000000000001
//	0x06 complex    two floats (real, imaginary) as above, without tags
//	0x07 string     uvarint byte length, then the bytes as they are
//	0x08 bytes      []byte or [N]byte: uvarint length, then the bytes
//	0x09 time       time.Time: 8 bytes big-endian Unix seconds, then 4 bytes
//	                big-endian nanoseconds; the location and the monotonic
//	                reading are ignored, so equal instants encode alike
//	0x0a list       other slices and arrays: uvarint count, then each element
//	0x0b map        uvarint count, then (key, value) pairs sorted by the bytes
//	                of the encoded key
//	0x0c struct     uvarint field count, then per exported field in declaration
//	                order: uvarint name length, the Go field name, the value
//	0x0d marshaled  a struct with no exported fields that implements
//	                encoding.BinaryMarshaler (else encoding.TextMarshaler):
//	                uvarint length, then the marshaled bytes
//
// Pointers and interfaces are transparent: a non-nil pointer encodes as the
// value it points to. Struct fields tagged `fingerprint:"-"` and unexported
// fields are left out; an embedded struct is one field named after its type.
// Channels, functions, unsafe pointers, structs with only unexported fields
// and no marshaler, and reference cycles are errors wrapping ErrUnsupported.
//
// The encoding is part of Tidemark's stored state: changing it would make
// every row look changed. Golden values in the tests pin it.
package fingerprint
