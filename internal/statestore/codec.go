package statestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Section is what one source row keeps for one root target: the keys of the
// target states it declared (or staged) there, with their records.
type Section struct {
	TargetID int64
	// Gen is the flow generation the section was written in. Entries older
	// than the target's DestroyedGen no longer exist; entries older than its
	// LostGen may have lost their data.
	Gen     int64
	Entries []Entry
}

// Entry is one target state tracked for a source row.
type Entry struct {
	Key string
	// Record is the tracking record; nil when there is none.
	Record []byte
	// Deleting marks a staged entry whose state was about to be deleted.
	Deleting bool
	// Wrote marks a committed entry whose value the row wrote itself, so
	// that it may be the value in the target; a row whose write of a state
	// that several rows declare was superseded in its batch has it unset.
	Wrote bool
	// Value is the state's value as a change hook is told of it (JSON),
	// kept only for the states of a target with a hook; nil otherwise.
	Value []byte
	// Seq is the sequence number of the state's last change the row made
	// while the target had a hook (see Change.Seq).
	Seq int64
}

// blobVersion is the first byte of every encoded blob.
const blobVersion = 1

const (
	flagHasRecord = 1 << 0
	flagDeleting  = 1 << 1
	flagWrote     = 1 << 2
	flagHasValue  = 1 << 3
)

// ErrCorrupt is wrapped by DecodeSections for a blob it cannot read.
var ErrCorrupt = errors.New("statestore: corrupt tracking blob")

// EncodeSections encodes sections into a blob; nil for no sections. The
// format is a version byte, then a uvarint count of sections, each a uvarint
// target id, a uvarint generation and a uvarint count of entries, each a
// uvarint-length-prefixed key, a flags byte (1: has record, 2: deleting,
// 4: wrote, 8: has value), if it has one a uvarint-length-prefixed record,
// and if it has a value a uvarint-length-prefixed value and a uvarint
// sequence.
func EncodeSections(sections []Section) []byte {
	if len(sections) == 0 {
		return nil
	}
	size := 1 + binary.MaxVarintLen64
	for _, s := range sections {
		size += 3 * binary.MaxVarintLen64
		for _, e := range s.Entries {
			size += 2*binary.MaxVarintLen32 + 1 + len(e.Key) + len(e.Record)
			if e.Value != nil {
				size += binary.MaxVarintLen32 + binary.MaxVarintLen64 + len(e.Value)
			}
		}
	}
	b := make([]byte, 0, size)
	b = append(b, blobVersion)
	b = binary.AppendUvarint(b, uint64(len(sections)))
	for _, s := range sections {
		b = binary.AppendUvarint(b, uint64(s.TargetID))
		b = binary.AppendUvarint(b, uint64(s.Gen))
		b = binary.AppendUvarint(b, uint64(len(s.Entries)))
		for _, e := range s.Entries {
			b = binary.AppendUvarint(b, uint64(len(e.Key)))
			b = append(b, e.Key...)
			var flags byte
			if e.Record != nil {
				flags |= flagHasRecord
			}
			if e.Deleting {
				flags |= flagDeleting
			}
			if e.Wrote {
				flags |= flagWrote
			}
			if e.Value != nil {
				flags |= flagHasValue
			}
			b = append(b, flags)
			if e.Record != nil {
				b = binary.AppendUvarint(b, uint64(len(e.Record)))
				b = append(b, e.Record...)
			}
			if e.Value != nil {
				b = binary.AppendUvarint(b, uint64(len(e.Value)))
				b = append(b, e.Value...)
				b = binary.AppendUvarint(b, uint64(e.Seq))
			}
		}
	}
	return b
}

// DecodeSections decodes a blob written by EncodeSections. Records alias
// the blob.
func DecodeSections(b []byte) ([]Section, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := decoder{b: b}
	if v := d.byte(); v != blobVersion {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	n := d.count()
	sections := make([]Section, 0, n)
	for range n {
		s := Section{TargetID: int64(d.uvarint()), Gen: int64(d.uvarint())}
		m := d.count()
		s.Entries = make([]Entry, 0, m)
		for range m {
			e := Entry{Key: string(d.bytes())}
			flags := d.byte()
			if flags&^(flagHasRecord|flagDeleting|flagWrote|flagHasValue) != 0 {
				d.fail("flags")
			}
			e.Deleting = flags&flagDeleting != 0
			e.Wrote = flags&flagWrote != 0
			if flags&flagHasRecord != 0 {
				e.Record = d.bytes()
				if e.Record == nil {
					e.Record = []byte{}
				}
			}
			if flags&flagHasValue != 0 {
				e.Value = d.bytes()
				if e.Value == nil {
					e.Value = []byte{}
				}
				e.Seq = int64(d.uvarint())
			}
			if d.err != nil {
				return nil, d.err
			}
			s.Entries = append(s.Entries, e)
		}
		sections = append(sections, s)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return sections, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("length")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count that cannot exceed the bytes left, so a corrupt blob
// cannot make the decoder allocate wildly.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail("count")
		return 0
	}
	return int(v)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

// EncodeRecords encodes a list of records, where nil entries stay nil, for
// Target.Staged.
func EncodeRecords(records [][]byte) []byte {
	if len(records) == 0 {
		return nil
	}
	entries := make([]Entry, len(records))
	for i, r := range records {
		entries[i] = Entry{Record: r}
	}
	return EncodeSections([]Section{{Entries: entries}})
}

// DecodeRecords decodes a list written by EncodeRecords.
func DecodeRecords(b []byte) ([][]byte, error) {
	sections, err := DecodeSections(b)
	if err != nil || len(sections) == 0 {
		return nil, err
	}
	if len(sections) != 1 {
		return nil, fmt.Errorf("%w: %d record lists", ErrCorrupt, len(sections))
	}
	out := make([][]byte, len(sections[0].Entries))
	for i, e := range sections[0].Entries {
		out[i] = e.Record
	}
	return out, nil
}

// ContainsRecord reports whether records holds r, telling nil (a staged
// drop) from an empty record.
func ContainsRecord(records [][]byte, r []byte) bool {
	for _, x := range records {
		if (x == nil) == (r == nil) && bytes.Equal(x, r) {
			return true
		}
	}
	return false
}

// StageDrop adds a staged drop to a blob written by EncodeRecords, unless
// it holds one, and reports whether it changed it.
func StageDrop(blob []byte) ([]byte, bool, error) {
	records, err := DecodeRecords(blob)
	if err != nil {
		return nil, false, err
	}
	if ContainsRecord(records, nil) {
		return blob, false, nil
	}
	return EncodeRecords(append(records, nil)), true, nil
}

// HashKey returns the ownership hash of a target key.
func HashKey(key string) [16]byte {
	sum := sha256.Sum256([]byte(key))
	return [16]byte(sum[:16])
}
