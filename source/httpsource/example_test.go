package httpsource_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tidemark/tidemark/source/httpsource"
)

// A source's Get fetches one item as JSON, conditionally: asked again, an
// unchanged item costs a 304 and no body.
func Example() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"1"`)
		fmt.Fprint(w, `{"id": 7, "title": "hello"}`)
	}))
	defer api.Close()

	c, err := httpsource.New(httpsource.Options{Name: "example", RequestsPerSecond: 50})
	if err != nil {
		panic(err)
	}
	get := func() {
		var item struct {
			ID    int    `json:"id"`
			Title string `json:"title"`
		}
		err := c.Get(context.Background(), httpsource.Request{URL: api.URL + "/items/7", Endpoint: "items", Conditional: true},
			func(r *httpsource.Response) error {
				if err := json.NewDecoder(r.Body).Decode(&item); err != nil {
					return httpsource.Permanent(err)
				}
				return nil
			})
		switch {
		case errors.Is(err, httpsource.ErrNotModified):
			fmt.Println("unchanged")
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Println(item.ID, item.Title)
		}
	}
	get()
	get()
	st := c.Stats()
	fmt.Println(st.Requests["items"], "requests,", st.NotModified, "not modified")
	// Output:
	// 7 hello
	// unchanged
	// 2 requests, 1 not modified
}
