package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/tidemark/tidemark"
)

// partsNS is the namespace of the ERP's PartsService; an operation's
// SOAPAction is partsNS + "/" + its name.
const partsNS = "http://erp.acme.example/parts/v1"

// listParts asks for a page of the catalogue: the first without a token.
type listParts struct {
	XMLName   xml.Name `xml:"http://erp.acme.example/parts/v1 ListParts"`
	PageToken string   `xml:"PageToken,omitempty"`
	PageSize  int      `xml:"PageSize,omitempty"`
}

// listPartsResponse is a page; the last has no NextPageToken.
type listPartsResponse struct {
	XMLName       xml.Name  `xml:"http://erp.acme.example/parts/v1 ListPartsResponse"`
	Parts         []PartRef `xml:"Parts>PartRef"`
	NextPageToken string    `xml:"NextPageToken,omitempty"`
}

// PartRef is a part as ListParts lists it.
type PartRef struct {
	PartNo       string    `xml:"PartNo"`
	LastModified time.Time `xml:"LastModified"`
}

type getPart struct {
	XMLName xml.Name `xml:"http://erp.acme.example/parts/v1 GetPart"`
	PartNo  string   `xml:"PartNo"`
}

type getPartResponse struct {
	XMLName xml.Name `xml:"http://erp.acme.example/parts/v1 GetPartResponse"`
	Part    Part     `xml:"Part"`
}

// Part is a record of the ERP's parts catalogue, as GetPart returns it.
type Part struct {
	PartNo        string    `xml:"PartNo"`
	Description   string    `xml:"Description"`
	Category      string    `xml:"Category"`
	UnitOfMeasure string    `xml:"UnitOfMeasure"`
	Price         Price     `xml:"Price"`
	Supplier      Supplier  `xml:"Supplier"`
	Stock         []Bin     `xml:"Stock>Bin"`
	LastModified  time.Time `xml:"LastModified"`
}

// Price is an amount, as a decimal, in a currency:
// <Price currency="EUR">0.14</Price>.
type Price struct {
	Currency string `xml:"currency,attr"`
	Amount   string `xml:",chardata"`
}

// Supplier is who a part is bought from.
type Supplier struct {
	Code string `xml:"code,attr"`
	Name string `xml:"Name"`
}

// Bin is a part's stock in one warehouse.
type Bin struct {
	Warehouse string `xml:"warehouse,attr"`
	Quantity  int    `xml:"qty,attr"`
}

// Source is a Tidemark source over the ERP's PartsService, keyed by part
// number: ListParts, page by page, lists the parts with their LastModified
// as ordinal, and GetPart gets one part.
type Source struct {
	c        *Client
	pageSize int
}

var _ tidemark.Source[string, Part] = (*Source)(nil)

// NewSource returns a Source calling through c, listing pageSize parts a
// page (0: as many as the service likes).
func NewSource(c *Client, pageSize int) *Source { return &Source{c: c, pageSize: pageSize} }

// List yields every part with its LastModified in µs. A page that fails
// (a fault after the retries, malformed XML) is yielded as an error,
// which ends the listing as incomplete: Tidemark then deletes nothing.
func (s *Source) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		token := ""
		for page := 1; ; page++ {
			resp, err := call[listPartsResponse](ctx, s.c, partsNS+"/ListParts", listParts{PageToken: token, PageSize: s.pageSize})
			if err == nil && resp.NextPageToken != "" && resp.NextPageToken == token {
				err = fmt.Errorf("next page token %q is this page's", token)
			}
			if err != nil {
				yield(tidemark.Listed[string]{}, fmt.Errorf("ListParts page %d: %w", page, err))
				return
			}
			for _, p := range resp.Parts {
				if p.PartNo == "" {
					yield(tidemark.Listed[string]{}, fmt.Errorf("ListParts page %d: a part without PartNo", page))
					return
				}
				if !yield(tidemark.Listed[string]{Key: p.PartNo, Ordinal: ordinal(p.LastModified)}, nil) {
					return
				}
			}
			if resp.NextPageToken == "" {
				return
			}
			token = resp.NextPageToken
		}
	}
}

// Get gets one part. A soap:Client.NoSuchPart fault means it is gone
// (Exists false: its row is deleted); any other failure, a malformed
// answer included, fails this row alone, which keeps its last good value
// and is retried on the next update.
func (s *Source) Get(ctx context.Context, partNo string) (tidemark.Fetched[Part], error) {
	resp, err := call[getPartResponse](ctx, s.c, partsNS+"/GetPart", getPart{PartNo: partNo})
	var f *Fault
	switch {
	case errors.As(err, &f) && f.Code() == "Client.NoSuchPart":
		return tidemark.Fetched[Part]{}, nil
	case err != nil:
		return tidemark.Fetched[Part]{}, fmt.Errorf("GetPart %s: %w", partNo, err)
	case resp.Part.PartNo != partNo:
		return tidemark.Fetched[Part]{}, fmt.Errorf("GetPart %s: the answer is part %q", partNo, resp.Part.PartNo)
	}
	return tidemark.Fetched[Part]{Exists: true, Value: resp.Part, Ordinal: ordinal(resp.Part.LastModified)}, nil
}

// ordinal is a LastModified in µs; NoOrdinal when there is none (the part
// is then fetched on every update).
func ordinal(t time.Time) tidemark.Ordinal {
	if t.IsZero() {
		return tidemark.NoOrdinal
	}
	return tidemark.Ordinal(t.UnixMicro())
}
