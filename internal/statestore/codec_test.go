package statestore

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSectionsRoundTrip(t *testing.T) {
	t.Parallel()

	sections := []Section{
		{TargetID: 1, Gen: 0, Entries: []Entry{
			{Key: "a", Record: []byte{1, 2, 3}},
			{Key: "", Record: []byte{}},
			{Key: "nil record"},
			{Key: "gone", Deleting: true},
			{Key: "written", Record: []byte{9}, Wrote: true},
			{Key: "ünïcode\x00nul", Record: bytes.Repeat([]byte{0xff}, 300)},
			{Key: "hooked", Record: []byte{7}, Value: []byte(`{"price":12.5}`), Seq: 3},
			{Key: "hooked, empty", Value: []byte{}, Seq: 1 << 40},
		}},
		{TargetID: 1 << 40, Gen: 77},
	}
	b := EncodeSections(sections)
	got, err := DecodeSections(b)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, sections[0], got[0])
	require.Equal(t, int64(1<<40), got[1].TargetID)
	require.Equal(t, int64(77), got[1].Gen)
	require.Empty(t, got[1].Entries)
	require.NotNil(t, got[0].Entries[1].Record, "an empty record stays distinct from none")
	require.Nil(t, got[0].Entries[2].Record)
	require.NotNil(t, got[0].Entries[7].Value, "an empty value stays distinct from none")
	require.Nil(t, got[0].Entries[0].Value)

	require.Nil(t, EncodeSections(nil))
	none, err := DecodeSections(nil)
	require.NoError(t, err)
	require.Nil(t, none)
}

func TestRecordsRoundTrip(t *testing.T) {
	t.Parallel()

	records := [][]byte{[]byte("v1"), nil, {}}
	got, err := DecodeRecords(EncodeRecords(records))
	require.NoError(t, err)
	require.Equal(t, records, got)
}

func TestDecodeCorrupt(t *testing.T) {
	t.Parallel()

	good := EncodeSections([]Section{{TargetID: 3, Entries: []Entry{{Key: "key", Record: []byte("record")}}}})
	for name, b := range map[string][]byte{
		"version":    append([]byte{9}, good[1:]...),
		"truncated":  good[:len(good)-2],
		"trailing":   append(append([]byte(nil), good...), 0),
		"flags":      bytes.Replace(good, []byte("key\x01"), []byte("key\x81"), 1),
		"huge count": {blobVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeSections(b)
			require.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

func FuzzDecodeSections(f *testing.F) {
	f.Add(EncodeSections([]Section{{TargetID: 1, Gen: 2, Entries: []Entry{{Key: "a", Record: []byte("r")}, {Key: "b", Deleting: true}}}}))
	f.Add(EncodeSections([]Section{{TargetID: 3, Entries: []Entry{{Key: "h", Record: []byte("r"), Value: []byte("{}"), Seq: 2}}}}))
	f.Add([]byte{blobVersion, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sections, err := DecodeSections(b)
		if err != nil {
			return
		}
		again, err := DecodeSections(EncodeSections(sections))
		if err != nil {
			t.Fatalf("re-encoded blob does not decode: %v", err)
		}
		if len(again) != len(sections) {
			t.Fatalf("round trip changed the section count: %d != %d", len(again), len(sections))
		}
		for i := range sections {
			if sections[i].TargetID != again[i].TargetID || sections[i].Gen != again[i].Gen || len(sections[i].Entries) != len(again[i].Entries) {
				t.Fatalf("round trip changed section %d", i)
			}
			for j, e := range sections[i].Entries {
				g := again[i].Entries[j]
				if e.Key != g.Key || e.Deleting != g.Deleting || e.Wrote != g.Wrote || !bytes.Equal(e.Record, g.Record) || (e.Record == nil) != (g.Record == nil) ||
					!bytes.Equal(e.Value, g.Value) || (e.Value == nil) != (g.Value == nil) || e.Seq != g.Seq {
					t.Fatalf("round trip changed entry %d of section %d", j, i)
				}
			}
		}
	})
}
