package hnfake

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GenerateOptions describe a generated Dataset. The zero value of each field
// but Threads and CommentsPerThread means its default.
type GenerateOptions struct {
	// Threads is the number of threads (stories).
	Threads int
	// CommentsPerThread is the number of comments in every thread.
	CommentsPerThread int
	// Depth is the deepest nesting of a comment: 1 makes every comment
	// top-level. Default 6.
	Depth int
	// Seed makes the dataset: equal options give equal datasets.
	Seed int64
	// Start is the created_at of the newest thread; older threads go back
	// from it about a minute and a half apart, some in the same second.
	// Default DefaultStart().
	Start time.Time
	// TextBytes is the mean length of a comment's text, in bytes of HTML.
	// Lengths are spread log-normally around it. Default 300.
	TextBytes int
}

// DefaultStart is GenerateOptions.Start's default, 2026-07-09T03:48:29Z
// (the newest hit of the recorded listing): a fixed epoch, so that equal
// options give equal datasets whenever they are generated.
func DefaultStart() time.Time { return time.Date(2026, 7, 9, 3, 48, 29, 0, time.UTC) }

// FirstGeneratedID is the smallest id Generate gives.
const FirstGeneratedID = 40_000_001

func (o GenerateOptions) withDefaults() GenerateOptions {
	if o.Depth == 0 {
		o.Depth = 6
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart()
	}
	if o.TextBytes == 0 {
		o.TextBytes = 300
	}
	return o
}

func (o GenerateOptions) validate() error {
	switch {
	case o.Threads < 0:
		return fmt.Errorf("Threads must not be negative, got %d", o.Threads)
	case o.CommentsPerThread < 0:
		return fmt.Errorf("CommentsPerThread must not be negative, got %d", o.CommentsPerThread)
	case o.Depth < 0:
		return fmt.Errorf("Depth must not be negative, got %d", o.Depth)
	case o.TextBytes < 0:
		return fmt.Errorf("TextBytes must not be negative, got %d", o.TextBytes)
	}
	return nil
}

// Generate returns a Dataset of o.Threads stories, each with exactly
// o.CommentsPerThread comments, that looks like HN: ids increase with time
// across stories and comments (from FirstGeneratedID), a tenth of the
// stories are Ask HN text posts and a tenth Show HN, authors recur, points
// are mostly small, and texts are HN's HTML: paragraphs split by "<p>",
// links, <i>, <pre><code>, the entities &#x27; &quot; &amp; &gt; &#x2F;, and
// non-ASCII characters including some outside the BMP. A thread's updated_at
// is a few minutes after its newest comment. Generate is deterministic: the
// same options give the same Dataset. It panics on negative options.
func Generate(o GenerateOptions) *Dataset {
	if err := o.validate(); err != nil {
		panic("hnfake: Generate: " + err.Error())
	}
	o = o.withDefaults()
	g := newGenerator(o.Seed, datasetStream, o.TextBytes)
	threads := make([]*Thread, o.Threads)
	at := o.Start.UTC().Truncate(time.Second)
	for i := range threads {
		if i > 0 {
			at = at.Add(-g.threadGap())
		}
		threads[i] = g.thread(at, o.CommentsPerThread, o.Depth)
	}
	assignIDs(threads, FirstGeneratedID)
	d := NewDataset()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range threads {
		g.finish(t)
		d.storeLocked(t, nil, false)
	}
	return d
}

// addGenerated puts a new generated thread created now, with ids above every
// id in the Dataset, and returns a copy of it.
func (d *Dataset) addGenerated(comments, depth int, seed int64) *Thread {
	g := newGenerator(seed, addedStream, 300)
	d.mu.Lock()
	defer d.mu.Unlock()
	t := g.thread(d.now().UTC().Truncate(time.Second), comments, depth)
	assignIDs([]*Thread{t}, d.maxID+1)
	g.finish(t)
	d.storeLocked(t, nil, false)
	return copyThread(t, false)
}

// assignIDs numbers the threads and their comments from first in the order
// of their creation times, as HN does.
func assignIDs(threads []*Thread, first int64) {
	type stamp struct {
		at  int64
		seq int
		id  *int64
	}
	var stamps []stamp
	for _, t := range threads {
		stamps = append(stamps, stamp{t.CreatedAt.Unix(), len(stamps), &t.ID})
		eachNode(t.Children, func(n *Node) {
			stamps = append(stamps, stamp{n.CreatedAt.Unix(), len(stamps), &n.ID})
		})
	}
	slices.SortFunc(stamps, func(a, b stamp) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq))
	})
	for i, s := range stamps {
		*s.id = first + int64(i)
	}
}

type generator struct {
	r         *rand.Rand
	textBytes int
	authors   []string
}

// PCG streams, so that a thread added with seed n differs from a dataset
// generated with seed n.
const (
	datasetStream = 0x9e3779b97f4a7c15
	addedStream   = 0xda3e39cb94b95bdb
)

func newGenerator(seed int64, stream uint64, textBytes int) *generator {
	g := &generator{r: rand.New(rand.NewPCG(uint64(seed), stream)), textBytes: textBytes}
	g.authors = make([]string, 400)
	for i := range g.authors {
		g.authors[i] = g.userName()
	}
	return g
}

// threadGap is the time between two consecutive stories: exponential, mean
// about 90 s, and zero one time in twenty (stories in the same second).
func (g *generator) threadGap() time.Duration {
	if g.r.IntN(20) == 0 {
		return 0
	}
	return time.Duration(1+int(g.r.ExpFloat64()*90)) * time.Second
}

func (g *generator) author() string {
	// A few prolific users write much of the site.
	if g.r.IntN(4) == 0 {
		return g.authors[g.r.IntN(20)]
	}
	return g.authors[g.r.IntN(len(g.authors))]
}

func (g *generator) userName() string {
	syl := []string{"ka", "zo", "mi", "tr", "ex", "qu", "an", "ol", "pe", "st", "ri", "dev", "hack", "byte", "nu", "ja", "lo", "ix", "sam", "rob"}
	var sb strings.Builder
	for range 2 + g.r.IntN(3) {
		sb.WriteString(syl[g.r.IntN(len(syl))])
	}
	switch g.r.IntN(6) {
	case 0:
		sb.WriteString(strconv.Itoa(g.r.IntN(2000)))
	case 1:
		sb.WriteString("_")
		sb.WriteString(syl[g.r.IntN(len(syl))])
	case 2:
		sb.WriteString("-")
		sb.WriteString(syl[g.r.IntN(len(syl))])
	}
	return sb.String()
}

// thread makes a story created at at with n comments at most depth deep;
// ids are left zero. Comments are posted after their parent.
func (g *generator) thread(at time.Time, n, depth int) *Thread {
	t := &Thread{Type: "story", Author: g.author(), CreatedAt: at, Points: g.points()}
	switch k := g.r.IntN(10); {
	case k == 0:
		t.Title = "Ask HN: " + g.title() + "?"
		t.Text = g.text(2 * g.textBytes)
	case k == 1:
		t.Title = "Show HN: " + g.title()
		t.URL = g.url()
		if g.r.IntN(2) == 0 {
			t.Text = g.text(g.textBytes)
		}
	case k == 2 && g.r.IntN(4) == 0:
		t.Title = g.title() // a text post without a prefix
		t.Text = g.text(g.textBytes)
	default:
		t.Title = g.title()
		t.URL = g.url()
	}
	depth = max(depth, 1)
	type placed struct {
		n     *Node
		depth int
	}
	var open []placed // comments that may still get replies
	for range n {
		c := &Node{Author: g.author(), Text: g.text(g.textBytes)}
		if len(open) == 0 || g.r.IntN(3) == 0 {
			c.CreatedAt = at.Add(g.replyGap())
			t.Children = append(t.Children, c)
			if depth > 1 {
				open = append(open, placed{c, 1})
			}
			continue
		}
		// Replies go mostly to recent comments.
		i := len(open) - 1 - min(int(g.r.ExpFloat64()*4), len(open)-1)
		p := open[i]
		c.CreatedAt = p.n.CreatedAt.Add(g.replyGap())
		p.n.Children = append(p.n.Children, c)
		if p.depth+1 < depth {
			open = append(open, placed{c, p.depth + 1})
		}
	}
	return t
}

// finish orders every reply list by id (that is, by time, once ids are
// assigned) and sets updated_at a few minutes after the newest comment.
func (g *generator) finish(t *Thread) {
	newest := t.CreatedAt
	byID := func(a, b *Node) int { return cmp.Compare(a.ID, b.ID) }
	slices.SortFunc(t.Children, byID)
	eachNode(t.Children, func(n *Node) {
		slices.SortFunc(n.Children, byID)
		if n.CreatedAt.After(newest) {
			newest = n.CreatedAt
		}
	})
	t.UpdatedAt = newest.Add(time.Duration(30+g.r.IntN(600)) * time.Second)
}

func (g *generator) replyGap() time.Duration {
	return time.Duration(1+int(g.r.ExpFloat64()*900)) * time.Second
}

func (g *generator) points() int {
	switch k := g.r.IntN(20); {
	case k < 14:
		return 1 + g.r.IntN(4)
	case k < 19:
		return 5 + g.r.IntN(95)
	default:
		return 100 + g.r.IntN(1400)
	}
}

var words = strings.Fields(`the a of to and in that is for it with as on this be
are was not you by or have from but they which one at all can an we there
system data code model time people work company language build server memory
database query index update cache thread kernel network compiler browser
program design problem result paper team product users market money years
rust go python postgres sqlite linux apple google open source startup
interesting actually probably simply really quite already still never often
fast slow better worse simple hard cheap large small old new real good bad
think know want need use make find read write run test ship learn remember`)

var titleWords = strings.Fields(`Why How The A New Building Understanding
Lessons Notes Against Toward Rethinking Inside Scaling Debugging Designing
Rust Go SQLite Postgres Linux Compilers Databases Search Indexes Caches
Memory Networks Startups Programmers Incremental Queries Streams Files
Future Past Problem Case Guide History Cost Limits Art Science Age`)

func (g *generator) title() string {
	n := 3 + g.r.IntN(8)
	parts := make([]string, 0, n+1)
	for i := range n {
		if i == 0 || g.r.IntN(3) == 0 {
			parts = append(parts, titleWords[g.r.IntN(len(titleWords))])
		} else {
			parts = append(parts, words[g.r.IntN(len(words))])
		}
	}
	switch g.r.IntN(12) {
	case 0:
		parts = append(parts, "[pdf]")
	case 1:
		parts = append(parts, "("+strconv.Itoa(1990+g.r.IntN(36))+")")
	case 2:
		parts[len(parts)/2] += "'s"
	case 3:
		parts = append(parts, "–", "a “quick” look")
	case 4:
		parts = append(parts, "&", "Co")
	}
	return strings.Join(parts, " ")
}

var domains = []string{"example.com", "example.org", "example.net", "blog.example.com", "news.example.org", "docs.example.net"}

func (g *generator) url() string {
	var sb strings.Builder
	sb.WriteString("https://")
	sb.WriteString(domains[g.r.IntN(len(domains))])
	for range 1 + g.r.IntN(3) {
		sb.WriteByte('/')
		sb.WriteString(words[g.r.IntN(len(words))])
		sb.WriteByte('-')
		sb.WriteString(words[g.r.IntN(len(words))])
	}
	if g.r.IntN(5) == 0 {
		sb.WriteString("?id=")
		sb.WriteString(strconv.Itoa(g.r.IntN(100000)))
		sb.WriteString("&ref=hn")
	}
	return sb.String()
}

// escapedURL is a URL as HN writes it in comment HTML: slashes as &#x2F;.
func escapedURL(u string) string {
	return strings.ReplaceAll(strings.ReplaceAll(u, "&", "&amp;"), "/", "&#x2F;")
}

var nonASCII = []string{"naïve", "café", "—", "“quoted”", "’", "🙂", "日本語", "Zürich", "…", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"}

// text returns HN comment HTML about mean bytes long on average.
func (g *generator) text(mean int) string {
	const sigma = 0.8
	target := int(float64(mean) * math.Exp(sigma*g.r.NormFloat64()-sigma*sigma/2))
	target = max(target, 2)
	var sb strings.Builder
	for sentences := 0; sb.Len() < target; sentences++ {
		if sentences > 0 && g.r.IntN(3) == 0 {
			sb.WriteString("<p>")
			switch g.r.IntN(20) {
			case 0:
				sb.WriteString("&gt; ")
			case 1:
				sb.WriteString("<pre><code>  for i := range n {\n      x[i] = i &lt;&lt; 1\n  }\n</code></pre>")
				continue
			}
		} else if sentences > 0 {
			sb.WriteByte(' ')
		}
		g.sentence(&sb, target)
	}
	return sb.String()
}

// sentence writes words until the text reaches target bytes or the sentence
// its length.
func (g *generator) sentence(sb *strings.Builder, target int) {
	n := 4 + g.r.IntN(14)
	for i := 0; i < n && sb.Len() < target; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		w := words[g.r.IntN(len(words))]
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		switch g.r.IntN(60) {
		case 0, 1, 2:
			sb.WriteString([]string{"don&#x27;t", "it&#x27;s", "I&#x27;m", "can&#x27;t", "they&#x27;re"}[g.r.IntN(5)])
		case 3:
			sb.WriteString("&quot;" + w + "&quot;")
		case 4:
			sb.WriteString("&amp;")
		case 5:
			sb.WriteString("<i>" + w + "</i>")
		case 6:
			u := escapedURL(g.url())
			sb.WriteString(`<a href="` + u + `" rel="nofollow">` + u + `</a>`)
		case 7:
			sb.WriteString(nonASCII[g.r.IntN(len(nonASCII))])
		case 8:
			sb.WriteString("and&#x2F;or")
		default:
			sb.WriteString(w)
		}
	}
	sb.WriteString([]string{".", ".", ".", "?", "!", ":"}[g.r.IntN(6)])
}
