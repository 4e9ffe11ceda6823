package tidemark_test

import (
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// genSource is a generated source of n rows that holds no row in memory:
// keys are 0 … n-1, values are made on Get, and ordinals come from a
// version counter per row (a []uint32, the only per-row state).
type genSource struct {
	versions []uint32
	children int
	gets     atomic.Int64
}

type genThread struct {
	ID       int
	Title    string
	Comments []genComment
}

type genComment struct {
	ID   int
	Text string
}

func newGenSource(n, children int) *genSource {
	s := &genSource{versions: make([]uint32, n), children: children}
	for i := range s.versions {
		s.versions[i] = 1
	}
	return s
}

func (s *genSource) List(context.Context) iter.Seq2[tidemark.Listed[int], error] {
	return func(yield func(tidemark.Listed[int], error) bool) {
		for i := range s.versions {
			if !yield(tidemark.Listed[int]{Key: i, Ordinal: tidemark.Ordinal(atomic.LoadUint32(&s.versions[i]))}, nil) {
				return
			}
		}
	}
}

func (s *genSource) Get(_ context.Context, id int) (tidemark.Fetched[genThread], error) {
	s.gets.Add(1)
	v := atomic.LoadUint32(&s.versions[id])
	t := genThread{ID: id, Title: fmt.Sprintf("thread %d version %d", id, v), Comments: make([]genComment, s.children)}
	for j := range t.Comments {
		t.Comments[j] = genComment{ID: id*1000 + j, Text: fmt.Sprintf("comment %d of thread %d, version %d: lorem ipsum dolor sit amet", j, id, v)}
	}
	return tidemark.Fetched[genThread]{Exists: true, Value: t, Ordinal: tidemark.Ordinal(v)}, nil
}

func (s *genSource) bump(id int) { atomic.AddUint32(&s.versions[id], 1) }

// discard is a connector that drops what it is given, so that benchmarks
// measure the engine and its state store, not a target.
type discard struct{ rows atomic.Int64 }

type discardSpec struct{ Name string }

func (d *discard) PersistentKey(s discardSpec) target.Key { return target.Key("discard/" + s.Name) }
func (d *discard) Describe(k target.Key) string           { return string(k) }
func (d *discard) ApplySetupChange(context.Context, target.Key, *discardSpec, *discardSpec) error {
	return nil
}
func (d *discard) Mutate(_ context.Context, batch []target.Mutation[discardSpec, genComment]) error {
	for _, m := range batch {
		d.rows.Add(int64(len(m.Changes)))
	}
	return nil
}

func benchEngine(b *testing.B, opts tidemark.Options, src *genSource, sink *discard) *tidemark.Engine {
	b.Helper()
	f := tidemark.NewFlow("Bench")
	messages := tidemark.Custom(f, sink, discardSpec{Name: "messages"})
	tidemark.ForEach(tidemark.AddSource(f, "threads", tidemark.Source[int, genThread](src)),
		func(_ context.Context, r *tidemark.Row, id int, t genThread) error {
			messages.Declare(r, target.Key("t"+strconv.Itoa(id)), genComment{ID: id, Text: t.Title})
			for _, c := range t.Comments {
				messages.Declare(r, target.Key("c"+strconv.Itoa(c.ID)), c)
			}
			return nil
		})
	e, err := tidemark.Open(b.Context(), f, opts)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func benchStore(b *testing.B, backend string) tidemark.Options {
	b.Helper()
	switch backend {
	case "sqlite":
		return tidemark.Options{StateStore: filepath.Join(b.TempDir(), "state.db")}
	case "redis":
		url, prefix := redistest.Prefix(b)
		return tidemark.Options{StateStore: url, StateSchema: prefix}
	default:
		url, schema := pgtest.Schema(b)
		return tidemark.Options{StateStore: url, StateSchema: schema}
	}
}

func mustUpdate(b *testing.B, e *tidemark.Engine) *tidemarktype.UpdateStats {
	st, err := e.Update(b.Context(), tidemark.UpdateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if st.Failed() > 0 {
		b.Fatalf("%d rows failed: %v", st.Failed(), st.Failures)
	}
	return st
}

// BenchmarkInitialLoad syncs 1,000 threads of 49 comments (50,000 target
// rows) into an empty state store.
func BenchmarkInitialLoad(b *testing.B) {
	const threads, comments = 1000, 49
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			var rows int64
			for b.Loop() {
				b.StopTimer()
				src, sink := newGenSource(threads, comments), &discard{}
				e := benchEngine(b, benchStore(b, backend), src, sink)
				b.StartTimer()
				mustUpdate(b, e)
				b.StopTimer()
				rows += sink.rows.Load()
				e.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "target-rows/s")
		})
	}
}

// BenchmarkNoChange runs an update of 2,000 threads that changed nothing.
func BenchmarkNoChange(b *testing.B) {
	const threads = 2000
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			src, sink := newGenSource(threads, 5), &discard{}
			e := benchEngine(b, benchStore(b, backend), src, sink)
			defer e.Close()
			mustUpdate(b, e)
			src.gets.Store(0)
			for b.Loop() {
				mustUpdate(b, e)
			}
			if src.gets.Load() != 0 {
				b.Fatalf("%d Gets in a no-change update", src.gets.Load())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*threads), "ns/listed-row")
		})
	}
}

// BenchmarkOnePercentChanged runs an update of 2,000 threads of which 20
// changed.
func BenchmarkOnePercentChanged(b *testing.B) {
	const threads = 2000
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			src, sink := newGenSource(threads, 49), &discard{}
			e := benchEngine(b, benchStore(b, backend), src, sink)
			defer e.Close()
			mustUpdate(b, e)
			round := 0
			for b.Loop() {
				b.StopTimer()
				for i := range 20 {
					src.bump((round*20 + i*97) % threads)
				}
				round++
				src.gets.Store(0)
				b.StartTimer()
				mustUpdate(b, e)
				if src.gets.Load() != 20 {
					b.Fatalf("%d Gets for 20 changed rows", src.gets.Load())
				}
			}
		})
	}
}

// BenchmarkLargeNoChange lists 200,000 rows with nothing changed and
// reports the peak heap: it stays flat because no update holds every key
// in memory, only a bitmap of the row ids seen.
func BenchmarkLargeNoChange(b *testing.B) {
	const threads = 200_000
	src, sink := newGenSource(threads, 0), &discard{}
	e := benchEngine(b, benchStore(b, "sqlite"), src, sink)
	defer e.Close()
	mustUpdate(b, e)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	peak, stop := samplePeakHeap()
	for b.Loop() {
		mustUpdate(b, e)
	}
	maxHeap := stop()
	_ = peak
	b.ReportMetric(float64(maxHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(before.HeapInuse)/(1<<20), "idle-heap-MB")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*threads), "ns/listed-row")
}

// samplePeakHeap samples the heap in use until stop is called, which
// returns the highest value seen.
func samplePeakHeap() (*atomic.Uint64, func() uint64) {
	var (
		peak atomic.Uint64
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	wg.Go(func() {
		var m runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return &peak, func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}
