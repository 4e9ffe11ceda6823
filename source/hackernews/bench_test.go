package hackernews_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/source/hackernews"
)

func BenchmarkParseItem(b *testing.B) {
	var wide strings.Builder
	wide.WriteString(`{"id":1,"type":"story","children":[`)
	for i := range 10_000 {
		if i > 0 {
			wide.WriteByte(',')
		}
		fmt.Fprintf(&wide, `{"author":"user%d","children":[],"created_at":"2024-05-29T16:41:07.000Z","created_at_i":1717000867,"id":%d,"options":[],"parent_id":1,"points":null,"story_id":1,"text":"I&#x27;d like food to taste a little better than medicine. <a href=\"https:&#x2F;&#x2F;example.com\">link</a>","title":null,"type":"comment","url":null}`, i, i+2)
	}
	wide.WriteString(`]}`)

	for name, body := range map[string]string{
		"recorded":     string(readTestdata(b, recordedItem)),
		"10k comments": wide.String(),
		"20k deep":     deepThread(20_000),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := hackernews.ParseItem(strings.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPlainText(b *testing.B) {
	texts := recordedTexts(b)
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range texts {
			hackernews.PlainText(s)
		}
	}
}
