package hnfake_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

func TestLoadDir(t *testing.T) {
	t.Parallel()
	d, err := hnfake.LoadDir("testdata/items")
	require.NoError(t, err)
	th, ok := d.Get(40500071)
	require.True(t, ok)
	require.Equal(t, "story", th.Type)
	require.Equal(t, "realslimginz", th.Author)
	require.Equal(t, "https://www.example.com/", th.URL)
	require.Equal(t, "", th.Text)
	require.Equal(t, 19, th.Points)
	require.Equal(t, time.Date(2024, 5, 28, 12, 32, 21, 0, time.UTC), th.CreatedAt)
	require.Equal(t, time.Date(2024, 5, 29, 19, 1, 49, 0, time.UTC), th.UpdatedAt)
	require.Len(t, th.Children, 7)
	c := th.Children[1]
	require.Equal(t, int64(40514343), c.ID)
	require.Equal(t, "jgalt212", c.Author)
	require.Len(t, c.Children, 2)
	require.Equal(t, "This is easy, just eat boiled potatoes, meat and veg", c.Children[1].Text)
}

func TestLoadDirFiles(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		files map[string]string
		err   string
		check func(t *testing.T, d *hnfake.Dataset)
	}{
		"updated_at": {
			files: map[string]string{"a.json": `{"id":5,"title":"T","type":"story","created_at_i":100,"updated_at":"2024-01-02T03:04:05Z",
				"children":[{"id":6,"author":null,"text":null,"created_at":"2024-01-01T00:00:00.000Z","children":[]}]}`},
			check: func(t *testing.T, d *hnfake.Dataset) {
				th, _ := d.Get(5)
				require.Equal(t, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), th.UpdatedAt)
				require.Equal(t, time.Unix(100, 0).UTC(), th.CreatedAt)
				require.Equal(t, "", th.Children[0].Author, "a deleted comment")
				require.Equal(t, 2, d.NumItems())
			},
		},
		"job and others ignored": {
			files: map[string]string{"j.json": `{"id":9,"type":"job","title":"Hiring","url":null,"points":null,"created_at_i":100,"children":[]}`, "notes.txt": "x"},
			check: func(t *testing.T, d *hnfake.Dataset) {
				th, _ := d.Get(9)
				require.Equal(t, "job", th.Type)
				require.Equal(t, 1, d.Len())
			},
		},
		"empty dir": {files: map[string]string{}, check: func(t *testing.T, d *hnfake.Dataset) { require.Equal(t, 0, d.Len()) }},
		"not json":  {files: map[string]string{"bad.json": `{"id":`}, err: "bad.json"},
		"array":     {files: map[string]string{"arr.json": `[]`}, err: "not a JSON object"},
		"comment":   {files: map[string]string{"c.json": `{"id":3,"type":"comment","children":[]}`}, err: "is a comment"},
		"no id":     {files: map[string]string{"n.json": `{"title":"x"}`}, err: "not a positive integer"},
		"string id": {files: map[string]string{"s.json": `{"id":"3"}`}, err: "not an integer"},
		"bad child": {files: map[string]string{"b.json": `{"id":3,"children":[1]}`}, err: "not an object"},
		"bad time":  {files: map[string]string{"t.json": `{"id":3,"created_at":"yesterday"}`}, err: "yesterday"},
		"trailing":  {files: map[string]string{"x.json": `{"id":3} {}`}, err: "after the top-level"},
		"duplicate": {files: map[string]string{"a.json": `{"id":3}`, "b.json": `{"id":3}`}, err: "also in another file"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for n, body := range tt.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644))
			}
			d, err := hnfake.LoadDir(dir)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			tt.check(t, d)
		})
	}
	_, err := hnfake.LoadDir(filepath.Join(t.TempDir(), "missing"))
	require.ErrorContains(t, err, "no such file")
	_, err = hnfake.LoadDir("testdata/items/items-40500071.json")
	require.ErrorContains(t, err, "not a directory")
	bad := filepath.Join(t.TempDir(), "[")
	require.NoError(t, os.Mkdir(bad, 0o755))
	_, err = hnfake.LoadDir(bad)
	require.Error(t, err, "not a valid pattern")
}
