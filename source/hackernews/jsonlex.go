package hackernews

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// tokKind is the kind of a JSON token read by lexer.
type tokKind uint8

const (
	tokEOF tokKind = iota // end of input after a complete value, or an empty input
	tokBeginObject
	tokEndObject
	tokBeginArray
	tokEndArray
	tokKey // an object member's name; the text is in lexer.buf
	tokString
	tokNumber // the literal text is in lexer.buf
	tokTrue
	tokFalse
	tokNull
)

// lexer states: what the grammar allows next.
const (
	stValue      = iota // a value (at the top or after ':' or ',' in an array)
	stKeyOrEnd          // after '{'
	stKey               // after ',' in an object
	stColon             // after a key
	stValueOrEnd        // after '['
	stCommaOrEnd        // after a value inside a container
	stDone              // after the top-level value
)

// syntaxError is a violation of the JSON grammar (RFC 8259) at an offset.
type syntaxError struct {
	msg string
	off int64
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

// readError is a failure of the underlying reader, as opposed to bad JSON.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// lexer reads a stream of JSON tokens and checks their grammar. It keeps the
// open containers on an explicit stack, so nesting depth is bounded only by
// memory (one byte per level), never by the goroutine stack.
//
// It is strict: what it accepts is valid JSON (strings may hold invalid
// UTF-8, which str replaces with U+FFFD, as encoding/json does).
type lexer struct {
	r     *bufio.Reader
	off   int64  // bytes consumed
	buf   []byte // text of the last key, string or number token
	stack []byte // '{' or '[' per open container
	state int
	began bool // a token was read
}

func newLexer(r io.Reader) *lexer {
	return &lexer{r: bufio.NewReader(r)}
}

// str returns the text of the last key or string token as valid UTF-8.
func (l *lexer) str() string {
	if !utf8.Valid(l.buf) {
		return string(bytes.ToValidUTF8(l.buf, []byte("\uFFFD")))
	}
	return string(l.buf)
}

func (l *lexer) syntax(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...), off: l.off}
}

// readByte returns the next byte; at the end of input it returns io.EOF,
// and a reader's failure as a *readError.
func (l *lexer) readByte() (byte, error) {
	c, err := l.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, &readError{err}
	}
	l.off++
	return c, nil
}

// mustByte is readByte inside a token, where the end of input is an error.
func (l *lexer) mustByte() (byte, error) {
	c, err := l.readByte()
	if err == io.EOF {
		return 0, l.unexpectedEOF()
	}
	return c, err
}

func (l *lexer) unexpectedEOF() error {
	return fmt.Errorf("unexpected end of input at byte %d: %w", l.off, io.ErrUnexpectedEOF)
}

// advance consumes the byte that peekByte returned.
func (l *lexer) advance() { l.discard(1) }

// discard consumes n bytes known to be buffered.
func (l *lexer) discard(n int) {
	l.r.Discard(n) // buffered: cannot fail
	l.off += int64(n)
}

// skipSpace consumes the whitespace already buffered.
func (l *lexer) skipSpace() {
	p, _ := l.r.Peek(l.r.Buffered())
	i := 0
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	l.discard(i)
}

// peekByte returns the next byte without consuming it; ok is false at the
// end of input.
func (l *lexer) peekByte() (c byte, ok bool, err error) {
	p, err := l.r.Peek(1)
	if len(p) == 1 {
		return p[0], true, nil
	}
	if err == io.EOF || err == nil {
		return 0, false, nil
	}
	return 0, false, &readError{err}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// next returns the next token. After an error the lexer must not be used.
func (l *lexer) next() (tokKind, error) {
	for {
		c, err := l.readByte()
		for err == nil && isSpace(c) {
			l.skipSpace()
			c, err = l.readByte()
		}
		if err == io.EOF {
			if l.state == stDone || (!l.began && l.state == stValue) {
				return tokEOF, nil
			}
			return 0, l.unexpectedEOF()
		}
		if err != nil {
			return 0, err
		}
		l.began = true
		switch l.state {
		case stDone:
			return 0, l.syntax("unexpected %q after the top-level value", c)
		case stColon:
			if c != ':' {
				return 0, l.syntax("expected ':' after object key, found %q", c)
			}
			l.state = stValue
			continue
		case stCommaOrEnd:
			top := l.stack[len(l.stack)-1]
			switch {
			case c == ',' && top == '{':
				l.state = stKey
				continue
			case c == ',':
				l.state = stValue
				continue
			case c == '}' && top == '{':
				return l.end(tokEndObject), nil
			case c == ']' && top == '[':
				return l.end(tokEndArray), nil
			}
			return 0, l.syntax("expected ',' or %q, found %q", closer(top), c)
		case stKeyOrEnd, stKey:
			if c == '}' && l.state == stKeyOrEnd {
				return l.end(tokEndObject), nil
			}
			if c != '"' {
				return 0, l.syntax("expected object key, found %q", c)
			}
			if err := l.readString(); err != nil {
				return 0, err
			}
			l.state = stColon
			return tokKey, nil
		case stValueOrEnd:
			if c == ']' {
				return l.end(tokEndArray), nil
			}
		}
		return l.value(c)
	}
}

func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

// end pops the innermost container, which has just been closed.
func (l *lexer) end(k tokKind) tokKind {
	l.stack = l.stack[:len(l.stack)-1]
	l.afterValue()
	return k
}

func (l *lexer) afterValue() {
	if len(l.stack) == 0 {
		l.state = stDone
	} else {
		l.state = stCommaOrEnd
	}
}

// value reads a value that starts with c.
func (l *lexer) value(c byte) (tokKind, error) {
	switch c {
	case '{':
		l.stack = append(l.stack, '{')
		l.state = stKeyOrEnd
		return tokBeginObject, nil
	case '[':
		l.stack = append(l.stack, '[')
		l.state = stValueOrEnd
		return tokBeginArray, nil
	case '"':
		if err := l.readString(); err != nil {
			return 0, err
		}
		l.afterValue()
		return tokString, nil
	case 't':
		return l.literal("rue", tokTrue)
	case 'f':
		return l.literal("alse", tokFalse)
	case 'n':
		return l.literal("ull", tokNull)
	}
	if c == '-' || ('0' <= c && c <= '9') {
		if err := l.readNumber(c); err != nil {
			return 0, err
		}
		l.afterValue()
		return tokNumber, nil
	}
	return 0, l.syntax("unexpected %q where a value was expected", c)
}

func (l *lexer) literal(rest string, k tokKind) (tokKind, error) {
	for i := 0; i < len(rest); i++ {
		c, err := l.mustByte()
		if err != nil {
			return 0, err
		}
		if c != rest[i] {
			return 0, l.syntax("invalid literal")
		}
	}
	l.afterValue()
	return k, nil
}

// readNumber reads a number whose first byte c was read, checking
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. The byte after it is left
// unread, for next to judge.
func (l *lexer) readNumber(c byte) error {
	l.buf = append(l.buf[:0], c)
	if c == '-' {
		d, err := l.mustByte()
		if err != nil {
			return err
		}
		if d < '0' || d > '9' {
			return l.syntax("invalid number")
		}
		l.buf = append(l.buf, d)
		c = d
	}
	if c != '0' {
		if err := l.digits(false); err != nil {
			return err
		}
	}
	p, ok, err := l.peekByte()
	if err != nil {
		return err
	}
	if ok && p == '.' {
		l.advance()
		l.buf = append(l.buf, '.')
		if err := l.digits(true); err != nil {
			return err
		}
		if p, ok, err = l.peekByte(); err != nil {
			return err
		}
	}
	if ok && (p == 'e' || p == 'E') {
		l.advance()
		l.buf = append(l.buf, p)
		if p, ok, err = l.peekByte(); err != nil {
			return err
		}
		if ok && (p == '+' || p == '-') {
			l.advance()
			l.buf = append(l.buf, p)
		}
		if err := l.digits(true); err != nil {
			return err
		}
	}
	return nil
}

// digits reads a run of digits; one at least if required.
func (l *lexer) digits(required bool) error {
	n := 0
	for {
		p, ok, err := l.peekByte()
		if err != nil {
			return err
		}
		if !ok || p < '0' || p > '9' {
			break
		}
		l.advance()
		l.buf = append(l.buf, p)
		n++
	}
	if required && n == 0 {
		if _, ok, _ := l.peekByte(); !ok {
			return l.unexpectedEOF()
		}
		return l.syntax("invalid number")
	}
	return nil
}

// readString reads a string whose opening quote was read, decoding escapes
// into l.buf.
func (l *lexer) readString() error {
	l.buf = l.buf[:0]
	for {
		// Copy the plain bytes already buffered in one go.
		p, _ := l.r.Peek(l.r.Buffered())
		i := 0
		for i < len(p) && p[i] != '"' && p[i] != '\\' && p[i] >= 0x20 {
			i++
		}
		l.buf = append(l.buf, p[:i]...)
		l.discard(i)

		c, err := l.mustByte()
		if err != nil {
			return err
		}
		switch {
		case c == '"':
			return nil
		case c < 0x20:
			return l.syntax("control character %q in string", c)
		case c != '\\':
			l.buf = append(l.buf, c)
			continue
		}
		c, err = l.mustByte()
		if err != nil {
			return err
		}
		switch c {
		case '"', '\\', '/':
			l.buf = append(l.buf, c)
		case 'b':
			l.buf = append(l.buf, '\b')
		case 'f':
			l.buf = append(l.buf, '\f')
		case 'n':
			l.buf = append(l.buf, '\n')
		case 'r':
			l.buf = append(l.buf, '\r')
		case 't':
			l.buf = append(l.buf, '\t')
		case 'u':
			r, err := l.hex4()
			if err != nil {
				return err
			}
			if utf16.IsSurrogate(r) {
				r = l.lowSurrogate(r)
			}
			l.buf = utf8.AppendRune(l.buf, r)
		default:
			return l.syntax("invalid escape %q in string", c)
		}
	}
}

// hex4 reads the four hex digits of a \u escape.
func (l *lexer) hex4() (rune, error) {
	var r rune
	for range 4 {
		c, err := l.mustByte()
		if err != nil {
			return 0, err
		}
		d, ok := hexVal(c)
		if !ok {
			return 0, l.syntax("invalid \\u escape in string")
		}
		r = r<<4 | d
	}
	return r, nil
}

// lowSurrogate completes the surrogate hi with a following \uXXXX escape if
// that escape is its low half; otherwise hi decodes to U+FFFD and the next
// bytes are left for the string's reader.
func (l *lexer) lowSurrogate(hi rune) rune {
	p, _ := l.r.Peek(6)
	if len(p) < 6 || p[0] != '\\' || p[1] != 'u' {
		return utf8.RuneError
	}
	var lo rune
	for _, c := range p[2:] {
		d, ok := hexVal(c)
		if !ok {
			return utf8.RuneError
		}
		lo = lo<<4 | d
	}
	r := utf16.DecodeRune(hi, lo)
	if r == utf8.RuneError {
		return r
	}
	l.discard(6) // peeked
	return r
}

func hexVal(c byte) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10), true
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10), true
	}
	return 0, false
}

// skip skips the value that token k began: nothing more for a scalar, the
// whole container for '{' or '['. It counts depth instead of recursing.
func (l *lexer) skip(k tokKind) error {
	if k != tokBeginObject && k != tokBeginArray {
		return nil
	}
	for depth := 1; depth > 0; {
		k, err := l.next()
		if err != nil {
			return err
		}
		switch k {
		case tokBeginObject, tokBeginArray:
			depth++
		case tokEndObject, tokEndArray:
			depth--
		case tokEOF:
			return l.unexpectedEOF() // unreachable: next reports it
		}
	}
	return nil
}

// isReadError reports whether err is the underlying reader's failure.
func isReadError(err error) bool {
	var re *readError
	return errors.As(err, &re)
}
