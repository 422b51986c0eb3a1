package mde

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const (
	defaultPageSize = 1000
	maxPageSize     = 10000 // documented maximum $top
	maxPages        = 1000
)

type listPage[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"@odata.nextLink"`
}

type listSpec[T any] struct {
	op       string
	fam      Family
	segments []string
	q        query
	pageSize int
	limit    int // 0: everything
	key      func(T) string
	// emptyOn404: GET /api/machines answers 404 when there are no recent machines.
	emptyOn404 bool
}

// list pages with $top/$skip and follows @odata.nextLink when the service
// sends one. A nextLink must point at the same scheme, host and /api/ path as
// the client's base URL (the bearer token goes wherever the link points); a
// repeated or unparseable link falls back to $skip paging, because both have
// been seen in the wild (defender-api.md §2.1). Items are de-duplicated by key,
// since new items can shift offsets between pages.
func list[T any](ctx context.Context, c *Client, s listSpec[T]) ([]T, error) {
	pageSize := s.pageSize
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	pageSize = min(pageSize, maxPageSize)
	if s.limit > 0 {
		pageSize = min(pageSize, s.limit)
	}
	var (
		out   []T
		ids   = map[string]struct{}{}
		seen  = map[string]struct{}{}
		skip  int
		next  string
		pages int
	)
	for {
		if pages >= maxPages {
			return out, fmt.Errorf("paging: stopped after %d pages", maxPages)
		}
		pages++
		u := next
		if u == "" {
			q := append(query(nil), s.q...).add("$top", strconv.Itoa(pageSize))
			if skip > 0 {
				q = q.add("$skip", strconv.Itoa(skip))
			}
			u = c.endpoint(q, s.segments...)
		}
		var p listPage[T]
		if err := c.send(ctx, s.op, s.fam, http.MethodGet, u, nil, []int{http.StatusOK}, &p, nil); err != nil {
			if s.emptyOn404 && pages == 1 && errors.Is(err, ErrNotFound) {
				return nil, nil
			}
			return out, err
		}
		for _, v := range p.Value {
			if s.key != nil {
				k := s.key(v)
				if _, dup := ids[k]; dup {
					continue
				}
				ids[k] = struct{}{}
			}
			out = append(out, v)
			if s.limit > 0 && len(out) >= s.limit {
				return out, nil
			}
		}
		skip += len(p.Value)
		next = ""
		if len(p.Value) == 0 {
			return out, nil
		}
		if p.NextLink != "" {
			nu, err := c.checkNextLink(p.NextLink)
			switch {
			case errors.Is(err, ErrForeignNextLink):
				return out, fmt.Errorf("paging: %w", err)
			case err != nil:
				c.log.Warn("ignoring malformed @odata.nextLink; paging with $skip", slog.String("op", s.op), slog.Int("skip", skip))
			default:
				if _, again := seen[nu]; again {
					c.log.Warn("repeated @odata.nextLink; paging with $skip", slog.String("op", s.op), slog.Int("skip", skip))
				} else {
					seen[nu] = struct{}{}
					next = nu
					continue
				}
			}
		}
		if len(p.Value) < pageSize {
			return out, nil
		}
	}
}

// ErrForeignNextLink means an @odata.nextLink pointed outside the API base URL; it is never followed.
var ErrForeignNextLink = errors.New("@odata.nextLink points outside the API base URL")

// checkNextLink accepts only links under the client's own scheme, host and
// API path.
func (c *Client) checkNextLink(link string) (string, error) {
	return CheckNextLink(c.base, "/api/", link)
}

// CheckNextLink validates an @odata.nextLink against an API base: same
// scheme and host (case-insensitive), path under base.Path+pathPrefix. It
// returns the normalised link. Errors wrapping ErrForeignNextLink mean "do not
// follow"; other errors mean the link could not be parsed.
func CheckNextLink(base *url.URL, pathPrefix, link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("parsing nextLink: %w", err)
	}
	if !u.IsAbs() {
		return "", errors.New("relative nextLink")
	}
	if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
		return "", ErrForeignNextLink
	}
	prefix := base.Path + pathPrefix
	if !strings.HasPrefix(u.Path, prefix) || strings.Contains(u.Path, "/../") || strings.Contains(u.Path, "/./") {
		return "", ErrForeignNextLink
	}
	u.Fragment = ""
	return u.String(), nil
}
