package tabletest

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tidemark/tidemark"
)

// Message is the row of the write benchmarks: a HackerNews-like message.
type Message struct {
	ID        string     `tidemark:"id,pk"`
	ThreadID  string     `tidemark:"thread_id"`
	ParentID  *string    `tidemark:"parent_id"`
	Author    *string    `tidemark:"author"`
	Text      string     `tidemark:"text"`
	CreatedAt *time.Time `tidemark:"created_at"`
}

// Thread is a source row of the write benchmarks: a thread of messages.
type Thread struct {
	ID       int
	Messages []Message
}

var words = strings.Fields(`the a to of and is in that it for you this on with be are not
have was can but if they or what as so just like from about at more would do there your which
one all people an will how time think get use go make when out only know rust postgres index
search sync crash write table engine query batch comment thread story data code system fast`)

// Threads is a generated source of threads with perThread messages each,
// deterministic by seed, holding nothing in memory: threads are made on Get.
type Threads struct {
	N, PerThread int
	Seed         uint64
}

// List implements tidemark.Source.
func (g Threads) List(context.Context) iter.Seq2[tidemark.Listed[int], error] {
	return func(yield func(tidemark.Listed[int], error) bool) {
		for i := range g.N {
			if !yield(tidemark.Listed[int]{Key: i, Ordinal: 1}, nil) {
				return
			}
		}
	}
}

// Get implements tidemark.Source.
func (g Threads) Get(_ context.Context, id int) (tidemark.Fetched[Thread], error) {
	return tidemark.Fetched[Thread]{Exists: true, Value: g.Thread(id), Ordinal: 1}, nil
}

// Thread returns thread id.
func (g Threads) Thread(id int) Thread {
	rng := rand.New(rand.NewPCG(g.Seed, uint64(id)))
	t := Thread{ID: id}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id) * time.Minute)
	for j := range g.PerThread {
		m := Message{ID: fmt.Sprintf("%d-%d", id, j), ThreadID: fmt.Sprint(id)}
		if j > 0 {
			p := fmt.Sprintf("%d-%d", id, rng.IntN(j))
			m.ParentID = &p
		}
		a := fmt.Sprintf("user%d", rng.IntN(5000))
		m.Author = &a
		n := 10 + rng.IntN(90) // 10 to 100 words, as HN comments mostly are
		ws := make([]string, n)
		for k := range ws {
			ws[k] = words[rng.IntN(len(words))]
		}
		m.Text = strings.Join(ws, " ")
		at := base.Add(time.Duration(j) * time.Second)
		m.CreatedAt = &at
		t.Messages = append(t.Messages, m)
	}
	return t
}

// Rows yields every message of every thread, in order.
func (g Threads) Rows() iter.Seq[Message] {
	return func(yield func(Message) bool) {
		for i := range g.N {
			for _, m := range g.Thread(i).Messages {
				if !yield(m) {
					return
				}
			}
		}
	}
}
