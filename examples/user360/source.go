package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"strconv"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
)

// Account is a user's document in the accounts service, the system of
// record: a user exists while accounts has them.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Billing is a user's document in the billing service.
type Billing struct {
	Plan      string    `json:"plan"`
	Seats     int       `json:"seats"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CRM is a user's document in the CRM.
type CRM struct {
	Company   string    `json:"company"`
	Owner     string    `json:"owner"`
	Notes     string    `json:"notes"`
	UpdatedAt time.Time `json:"updated_at"`
}

// User is a user as the three services know them; Billing or CRM is nil
// when that service has no record of the user.
type User struct {
	Account Account
	Billing *Billing
	CRM     *CRM
}

// URLs are the base URLs of the three services' APIs.
type URLs struct {
	Accounts, Billing, CRM string
}

// pageSize is the number of users asked for per listing page: small, so
// that the demo's 24 users take three pages.
const pageSize = 10

// Source is a Tidemark source of users, keyed by id, assembled from the
// three services. List reads only their listings (ids and updated_at);
// Get reads a user's three documents.
//
// A user is listed while the accounts service has them. Its version is a
// fingerprint of the three updated_at values, with "none" for a service
// that has no record of the user; it is listed as Listed.Fingerprint, with
// no ordinal, and Get returns the same fingerprint of what it fetched, so
// a user is fetched again exactly when one of the three values changed, in
// whichever direction. An ordinal such as their maximum would not do: a
// service whose clock is behind (billing's, here) can stamp a change
// earlier than another service's last one, and the maximum stays put; and
// an ordinal built from the three can fall — a record deleted, or restored
// from a backup — which Tidemark would take for "unchanged".
type Source struct {
	client *httpsource.Client
	urls   URLs
}

// entry is one user of a service's listing.
type entry struct {
	ID        string    `json:"id"`
	UpdatedAt time.Time `json:"updated_at"`
}

// List implements tidemark.Source. The three listings are sorted by id, so
// they are merged as they stream, a page of each in memory at a time.
func (s *Source) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		billing, stopBilling := follow(s.pages(ctx, "billing", s.urls.Billing))
		defer stopBilling()
		crm, stopCRM := follow(s.pages(ctx, "crm", s.urls.CRM))
		defer stopCRM()
		for a, err := range s.pages(ctx, "accounts", s.urls.Accounts) {
			var b, c *time.Time
			if err == nil {
				b, err = billing.at(a.ID)
			}
			if err == nil {
				c, err = crm.at(a.ID)
			}
			if err != nil {
				yield(tidemark.Listed[string]{}, err)
				return
			}
			if !yield(tidemark.Listed[string]{Key: a.ID, Ordinal: tidemark.NoOrdinal, Fingerprint: version(a.UpdatedAt, b, c)}, nil) {
				return
			}
		}
	}
}

// Get implements tidemark.Source: the user's document in each service. A
// user accounts does not have is gone; one billing or the CRM does not
// have gets a row without their part.
func (s *Source) Get(ctx context.Context, id string) (tidemark.Fetched[User], error) {
	a, err := fetch[Account](ctx, s.client, "accounts", s.urls.Accounts, id)
	if err != nil || a == nil {
		return tidemark.Fetched[User]{}, err
	}
	u := User{Account: *a}
	if u.Billing, err = fetch[Billing](ctx, s.client, "billing", s.urls.Billing, id); err != nil {
		return tidemark.Fetched[User]{}, err
	}
	if u.CRM, err = fetch[CRM](ctx, s.client, "crm", s.urls.CRM, id); err != nil {
		return tidemark.Fetched[User]{}, err
	}
	var b, c *time.Time
	if u.Billing != nil {
		b = &u.Billing.UpdatedAt
	}
	if u.CRM != nil {
		c = &u.CRM.UpdatedAt
	}
	return tidemark.Fetched[User]{Exists: true, Value: u, Fingerprint: version(u.Account.UpdatedAt, b, c)}, nil
}

// version fingerprints a user's three updated_at values; nil stands for a
// service that has no record of the user.
func version(accounts time.Time, billing, crm *time.Time) []byte {
	h := sha256.New()
	for _, t := range []*time.Time{&accounts, billing, crm} {
		s := "none"
		if t != nil {
			s = t.UTC().Format(time.RFC3339Nano)
		}
		io.WriteString(h, s+"\n")
	}
	return h.Sum(nil)
}

// fetch returns user id's document in a service, nil when it answers 404.
func fetch[T any](ctx context.Context, c *httpsource.Client, service, base, id string) (*T, error) {
	var doc T
	err := c.Get(ctx, httpsource.Request{
		URL:        base + "/users/" + url.PathEscape(id),
		Name:       service + "/users/" + id,
		Endpoint:   service,
		NotFoundOK: true,
	}, decode(&doc))
	switch {
	case errors.Is(err, httpsource.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &doc, nil
}

// pages streams a service's listing, page after page, checking that it
// comes in ascending id order, as the merge in List needs.
func (s *Source) pages(ctx context.Context, service, base string) iter.Seq2[entry, error] {
	return func(yield func(entry, error) bool) {
		after, last := "", ""
		for {
			var page struct {
				Users []entry `json:"users"`
				Next  string  `json:"next"`
			}
			err := s.client.Get(ctx, httpsource.Request{
				URL:      base + "/users?limit=" + strconv.Itoa(pageSize) + "&after=" + url.QueryEscape(after),
				Name:     service + "/users?after=" + after,
				Endpoint: service + " list",
			}, decode(&page))
			if err != nil {
				yield(entry{}, err)
				return
			}
			for _, e := range page.Users {
				if e.ID <= last {
					yield(entry{}, fmt.Errorf("%s: listing out of order: %q after %q", service, e.ID, last))
					return
				}
				last = e.ID
				if !yield(e, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			if page.Next <= after {
				yield(entry{}, fmt.Errorf("%s: listing does not advance: next page after %q", service, page.Next))
				return
			}
			after = page.Next
		}
	}
}

// decode returns a read function of httpsource.Client.Get that decodes a
// JSON body into v. A body that fails to read is retried; one that is not
// the JSON expected is not.
func decode(v any) func(*httpsource.Response) error {
	return func(r *httpsource.Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return httpsource.Permanent(fmt.Errorf("decoding the body: %w", err))
		}
		return nil
	}
}

// follower walks a listing in step with the accounts listing.
type follower struct {
	next func() (entry, error, bool)
	head entry
	ok   bool // head holds an entry not passed yet
}

// follow returns a follower of seq and the function that stops it.
func follow(seq iter.Seq2[entry, error]) (*follower, func()) {
	next, stop := iter.Pull2(seq)
	return &follower{next: next}, stop
}

// at returns id's updated_at in the listing, nil when it has none, passing
// the entries before id: the ids asked for must ascend.
func (f *follower) at(id string) (*time.Time, error) {
	for !f.ok || f.head.ID < id {
		e, err, more := f.next()
		if err != nil {
			return nil, err
		}
		if !more {
			return nil, nil
		}
		f.head, f.ok = e, true
	}
	if f.head.ID != id {
		return nil, nil
	}
	t := f.head.UpdatedAt
	return &t, nil
}
