package main

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"maps"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fake is a fake of a legacy ERP's PartsService, a SOAP 1.1 service:
// POST /erp/PartsService, text/xml, a SOAPAction of ListParts or GetPart.
// It counts the calls of each operation, and can be told to change parts
// and to fail. It is safe for concurrent use.
type Fake struct {
	mu    sync.Mutex
	parts map[string]Part
	// clock is the LastModified of the next edit.
	clock time.Time
	// faults are, by operation, how many of its next calls answer fault.
	faults map[string]injected
	// malformed are the parts whose GetPart answers truncated XML.
	malformed map[string]bool
	// brokenPage is the ListParts page (from 1) answered with truncated
	// XML; 0 for none.
	brokenPage int
	calls      map[string]Calls
}

type injected struct {
	n     int
	fault Fault
}

// Calls counts what an operation was asked.
type Calls struct{ Requests, Faults int }

// String returns "3", or "3 (2 faulted)".
func (c Calls) String() string {
	if c.Faults == 0 {
		return strconv.Itoa(c.Requests)
	}
	return fmt.Sprintf("%d (%d faulted)", c.Requests, c.Faults)
}

// NewFake returns a fake serving parts.
func NewFake(parts []Part) *Fake {
	f := &Fake{
		parts:     make(map[string]Part),
		clock:     time.Date(2024, 5, 6, 9, 0, 0, 0, time.UTC),
		faults:    make(map[string]injected),
		malformed: make(map[string]bool),
		calls:     make(map[string]Calls),
	}
	for _, p := range parts {
		f.parts[p.PartNo] = p
	}
	return f
}

// Start serves the fake on a loopback port, returning its endpoint and
// a function that stops it, closing its connections.
func (f *Fake) Start() (url string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("fake ERP: %w", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/erp/PartsService", srv.Close, nil
}

// Parts returns the parts, by part number.
func (f *Fake) Parts() map[string]Part {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.parts)
}

// Edit changes a part with edit, and moves its LastModified on.
func (f *Fake) Edit(partNo string, edit func(*Part)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[partNo]
	edit(&p)
	f.clock = f.clock.Add(time.Minute)
	p.LastModified = f.clock
	f.parts[partNo] = p
}

// Delete removes a part.
func (f *Fake) Delete(partNo string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.parts, partNo)
}

// FailNext makes the next n calls of op (ListParts, GetPart) answer
// fault.
func (f *Fake) FailNext(op string, n int, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = injected{n, fault}
}

// Malform makes GetPart of partNo answer truncated XML, or, with on
// false, answer well again.
func (f *Fake) Malform(partNo string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.malformed[partNo] = on
}

// BreakPage makes ListParts answer page n (from 1) with truncated XML; 0
// mends it.
func (f *Fake) BreakPage(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.brokenPage = n
}

// TakeCalls returns the calls by operation since the last TakeCalls.
func (f *Fake) TakeCalls() map[string]Calls {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = make(map[string]Calls)
	return c
}

// busyFault is what the ERP answers when it is busy.
func busyFault() Fault {
	return Fault{FaultCode: "soap:Server.Busy", FaultString: "ERP busy (MRP run in progress), try again later"}
}

// ServeHTTP answers one SOAP call.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a SOAP envelope", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "text/xml" {
		http.Error(w, "SOAP 1.1 wants text/xml", http.StatusUnsupportedMediaType)
		return
	}
	op, _ := strings.CutPrefix(strings.Trim(r.Header.Get("SOAPAction"), `"`), partsNS+"/")
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
		writeFault(w, Fault{FaultCode: "soap:Client", FaultString: "request too large"})
		return
	}
	answer, truncate, fault := f.answer(op, &buf)
	if fault != nil {
		writeFault(w, *fault)
		return
	}
	b, err := marshalEnvelope(answer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if truncate {
		b = b[:len(b)/2]
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.Write(b)
}

// answer counts a call of op and returns its answer, to be truncated
// when truncate, or its fault.
func (f *Fake) answer(op string, body *bytes.Buffer) (answer any, truncate bool, fault *Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[op]
	c.Requests++
	defer func() {
		if fault != nil {
			c.Faults++
		}
		f.calls[op] = c
	}()
	if inj := f.faults[op]; inj.n > 0 {
		inj.n--
		f.faults[op] = inj
		return nil, false, &inj.fault
	}
	switch op {
	case "ListParts":
		req, err := parseEnvelope[listParts](body)
		if err != nil {
			return nil, false, clientFault("malformed ListParts: " + err.Error())
		}
		return f.listParts(req)
	case "GetPart":
		req, err := parseEnvelope[getPart](body)
		if err != nil {
			return nil, false, clientFault("malformed GetPart: " + err.Error())
		}
		p, ok := f.parts[req.PartNo]
		if !ok {
			return nil, false, &Fault{FaultCode: "soap:Client.NoSuchPart", FaultString: "no part " + req.PartNo}
		}
		return getPartResponse{Part: p}, f.malformed[req.PartNo], nil
	}
	return nil, false, clientFault(fmt.Sprintf("no operation for SOAPAction %q", op))
}

// listParts answers a page of the parts in part number order. A page
// token is the last part number of the page before, base64-encoded.
func (f *Fake) listParts(req *listParts) (answer any, truncate bool, fault *Fault) {
	after, err := base64.RawURLEncoding.DecodeString(req.PageToken)
	if err != nil {
		return nil, false, clientFault("bad PageToken")
	}
	size := req.PageSize
	if size <= 0 || size > 50 {
		size = 20
	}
	var resp listPartsResponse
	keys := slices.Sorted(maps.Keys(f.parts))
	first, _ := slices.BinarySearch(keys, string(after)+"\x00")
	for _, k := range keys[first:min(first+size, len(keys))] {
		resp.Parts = append(resp.Parts, PartRef{PartNo: k, LastModified: f.parts[k].LastModified})
	}
	if last := first + size; last < len(keys) {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(keys[last-1]))
	}
	page := first/size + 1
	return resp, page == f.brokenPage, nil
}

func clientFault(msg string) *Fault { return &Fault{FaultCode: "soap:Client", FaultString: msg} }

// writeFault answers fault as SOAP 1.1 says: HTTP 500, with faultcode and
// faultstring unqualified.
func writeFault(w http.ResponseWriter, fault Fault) {
	var s strings.Builder
	xml.EscapeText(&s, []byte(fault.FaultString))
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, "%s<soap:Fault><faultcode>%s</faultcode><faultstring>%s</faultstring></soap:Fault>%s",
		envelopeStart, fault.FaultCode, s.String(), envelopeEnd)
}
