package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// soapNS is the namespace of SOAP 1.1 envelopes and faults.
const soapNS = "http://schemas.xmlsoap.org/soap/envelope/"

// The start and end of every envelope sent, by the client and the fake
// alike; the body's payload goes between them.
const (
	envelopeStart = `<?xml version="1.0" encoding="utf-8"?>` + "\n" +
		`<soap:Envelope xmlns:soap="` + soapNS + `"><soap:Body>`
	envelopeEnd = `</soap:Body></soap:Envelope>`
)

// envelope is a SOAP 1.1 envelope as received: its body holds a T or a
// fault. T names its element (and namespace) with an XMLName field.
type envelope[T any] struct {
	XMLName xml.Name `xml:"http://schemas.xmlsoap.org/soap/envelope/ Envelope"`
	Body    struct {
		Fault   *Fault
		Content *T
	} `xml:"http://schemas.xmlsoap.org/soap/envelope/ Body"`
}

// Fault is a SOAP 1.1 fault: a service's error, sent (with HTTP 500) in
// place of the answer.
type Fault struct {
	XMLName xml.Name `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault"`
	// FaultCode is a qualified name: soap:Client (the request is wrong),
	// soap:Server (the service failed), refined after a dot, as in
	// soap:Server.Busy.
	FaultCode   string `xml:"faultcode"`
	FaultString string `xml:"faultstring"`
}

// Error returns "SOAP fault {code}: {string}".
func (f *Fault) Error() string { return "SOAP fault " + f.FaultCode + ": " + f.FaultString }

// Code returns the fault code without its prefix: "Server.Busy" for
// soap:Server.Busy.
func (f *Fault) Code() string {
	return f.FaultCode[strings.LastIndexByte(f.FaultCode, ':')+1:]
}

// Busy reports whether the fault says the service is busy, as this ERP
// does with soap:Server.Busy: a retry later may succeed.
func (f *Fault) Busy() bool { return f.Code() == "Server.Busy" }

// marshalEnvelope returns an envelope whose body holds payload.
func marshalEnvelope(payload any) ([]byte, error) {
	b, err := xml.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(envelopeStart), b...), envelopeEnd...), nil
}

// parseEnvelope reads an envelope whose body holds a T, or a fault, which
// it returns as the error (a *Fault). Namespaces are matched by URI, not
// by prefix.
func parseEnvelope[T any](r io.Reader) (*T, error) {
	var env envelope[T]
	if err := xml.NewDecoder(r).Decode(&env); err != nil {
		return nil, err
	}
	switch body := env.Body; {
	case body.Fault != nil:
		return nil, body.Fault
	case body.Content == nil:
		return nil, errors.New("the SOAP body holds no answer")
	default:
		return body.Content, nil
	}
}

// ClientOptions configure a Client; zero fields take the defaults.
type ClientOptions struct {
	// URL is the service's endpoint. Required.
	URL string
	// RequestsPerSecond limits the calls (10 by default); Burst may go at
	// once after a pause (1 by default).
	RequestsPerSecond float64
	Burst             int
	// MaxAttempts bounds the attempts of one call that meets busy faults
	// or transport failures (5 by default); Backoff is the first wait
	// between them (100ms by default), doubled each time, with jitter.
	MaxAttempts int
	Backoff     time.Duration
	// Timeout bounds one attempt (30s by default).
	Timeout time.Duration
	// MaxBodyBytes bounds an answer (4 MiB by default).
	MaxBodyBytes int64
	// HTTPClient sends the requests; by default one with a transport of
	// its own.
	HTTPClient *http.Client
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.RequestsPerSecond == 0 {
		o.RequestsPerSecond = 10
	}
	if o.Burst == 0 {
		o.Burst = 1
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return o
}

func (o ClientOptions) validate() error {
	switch u, err := url.Parse(o.URL); {
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("URL must be an http or https URL, got %q", o.URL)
	case o.RequestsPerSecond < 0:
		return fmt.Errorf("RequestsPerSecond must not be negative, got %v", o.RequestsPerSecond)
	case o.Burst < 0:
		return fmt.Errorf("Burst must not be negative, got %d", o.Burst)
	case o.MaxAttempts < 0:
		return fmt.Errorf("MaxAttempts must not be negative, got %d", o.MaxAttempts)
	case o.Backoff < 0 || o.Timeout < 0:
		return fmt.Errorf("Backoff and Timeout must not be negative, got %s and %s", o.Backoff, o.Timeout)
	case o.MaxBodyBytes < 0:
		return fmt.Errorf("MaxBodyBytes must not be negative, got %d", o.MaxBodyBytes)
	}
	return nil
}

// Client calls the operations of a SOAP 1.1 service: a POST of an
// envelope per call, under a rate limit, with busy faults and transport
// failures retried with jittered exponential backoff. It is safe for
// concurrent use; Close releases its idle connections.
type Client struct {
	o       ClientOptions
	limit   *rate.Limiter
	retries atomic.Int64
}

// NewClient returns a Client of the service at o.URL.
func NewClient(o ClientOptions) (*Client, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("soap: %w", err)
	}
	return &Client{o: o, limit: rate.NewLimiter(rate.Limit(o.RequestsPerSecond), o.Burst)}, nil
}

// Retries returns how many attempts failed transiently and were retried.
func (c *Client) Retries() int64 { return c.retries.Load() }

// Close closes the client's idle connections.
func (c *Client) Close() { c.o.HTTPClient.CloseIdleConnections() }

// call sends in as the operation whose SOAPAction is action and returns
// the answer, a T. A fault is returned as a *Fault (errors.As finds it); a
// busy one, or a transport failure, is retried first, up to MaxAttempts.
// A malformed answer is not retried: the service would send it again.
func call[T any](ctx context.Context, c *Client, action string, in any) (*T, error) {
	req, err := marshalEnvelope(in)
	if err != nil {
		return nil, err
	}
	wait := c.o.Backoff
	for attempt := 1; ; attempt++ {
		out, err := post[T](ctx, c, action, req)
		switch {
		case err == nil:
			return out, nil
		case !retryable(err):
			return nil, err
		case attempt == c.o.MaxAttempts:
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		c.retries.Add(1)
		select {
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		wait *= 2
	}
}

// retryable reports whether a retry may fix err: a busy fault, or a
// transient failure.
func retryable(err error) bool {
	var (
		f *Fault
		t transientError
	)
	return errors.As(err, &t) || errors.As(err, &f) && f.Busy()
}

// transientError is a failure a retry may fix: a dropped connection, a
// timeout, a proxy's 502, 503 or 504.
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// post makes one attempt of call.
func post[T any](ctx context.Context, c *Client, action string, req []byte) (*T, error) {
	if err := c.limit.Wait(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.o.URL, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	hr.Header.Set("SOAPAction", `"`+action+`"`)
	resp, err := c.o.HTTPClient.Do(hr)
	if err != nil {
		return nil, transientError{err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxBodyBytes+1))
	switch {
	case err != nil:
		return nil, transientError{fmt.Errorf("reading the answer: %w", err)}
	case int64(len(body)) > c.o.MaxBodyBytes:
		return nil, fmt.Errorf("the answer is larger than %d bytes", c.o.MaxBodyBytes)
	}
	out, err := parseEnvelope[T](bytes.NewReader(body))
	var f *Fault
	switch code := resp.StatusCode; {
	case errors.As(err, &f):
		return nil, f // HTTP 500, as SOAP 1.1 says
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		return nil, transientError{fmt.Errorf("HTTP %d", code)}
	case code != http.StatusOK:
		return nil, fmt.Errorf("HTTP %d", code)
	case err != nil:
		return nil, fmt.Errorf("malformed answer: %w", err)
	}
	return out, nil
}
