// Package auth chooses the cloud endpoints and the Entra ID credential, and
// checks that the app registration holds the application roles the enabled
// features need.
package auth

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Profile is the set of endpoints of one cloud.
type Profile struct {
	Name string
	// MDEBaseURL is the Defender for Endpoint API root (without /api).
	MDEBaseURL string
	// MDEScope is the token scope for the MDE API.
	MDEScope string
	// AuthorityHost is the Entra ID sign-in host, with a trailing slash.
	AuthorityHost string
	// GraphBaseURL is the Microsoft Graph root including the version.
	GraphBaseURL string
	// GraphScope is the token scope for Graph.
	GraphScope string
}

// Profile names.
const (
	ProfileCommercial = "commercial"
	ProfileGCC        = "gcc"
	ProfileGCCHigh    = "gcchigh"
	ProfileDoD        = "dod"
	ProfileCustom     = "custom"
)

const (
	authorityPublic = "https://login.microsoftonline.com/"
	authorityUSGov  = "https://login.microsoftonline.us/"
)

// Regions of the commercial cloud with a documented geo host
// ({region}.api.security.microsoft.com, defender-api.md §1.4).
var regions = map[string]bool{"us": true, "eu": true, "uk": true, "au": true, "swa": true}

// Tokens for MDE are always requested for the securitycenter resource, also
// when calling a regional api.security.microsoft.com host (§1.2).
var profiles = map[string]Profile{
	ProfileCommercial: {
		MDEBaseURL:    "https://api.securitycenter.microsoft.com",
		MDEScope:      "https://api.securitycenter.microsoft.com/.default",
		AuthorityHost: authorityPublic,
		GraphBaseURL:  "https://graph.microsoft.com/v1.0",
		GraphScope:    "https://graph.microsoft.com/.default",
	},
	ProfileGCC: {
		MDEBaseURL:    "https://api-gcc.securitycenter.microsoft.us",
		MDEScope:      "https://api-gcc.securitycenter.microsoft.us/.default",
		AuthorityHost: authorityPublic,
		GraphBaseURL:  "https://graph.microsoft.com/v1.0",
		GraphScope:    "https://graph.microsoft.com/.default",
	},
	ProfileGCCHigh: {
		MDEBaseURL:    "https://api-gov.securitycenter.microsoft.us",
		MDEScope:      "https://api-gov.securitycenter.microsoft.us/.default",
		AuthorityHost: authorityUSGov,
		GraphBaseURL:  "https://graph.microsoft.us/v1.0",
		GraphScope:    "https://graph.microsoft.us/.default",
	},
	ProfileDoD: {
		MDEBaseURL:    "https://api-gov.securitycenter.microsoft.us",
		MDEScope:      "https://api-gov.securitycenter.microsoft.us/.default",
		AuthorityHost: authorityUSGov,
		GraphBaseURL:  "https://dod-graph.microsoft.us/v1.0",
		GraphScope:    "https://dod-graph.microsoft.us/.default",
	},
}

// ProfileNames lists the built-in profile names (and "custom").
func ProfileNames() []string {
	names := make([]string, 0, len(profiles)+1)
	for n := range profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return append(names, ProfileCustom)
}

// ProfileByName returns a built-in profile. region selects a geo host in the
// commercial cloud (us, eu, uk, au, swa; "" for the global host) and must be
// empty elsewhere. "custom" is refused here: use CustomProfile.
func ProfileByName(name, region string) (Profile, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" {
		n = ProfileCommercial
	}
	if n == ProfileCustom {
		return Profile{}, errors.New("cloud profile custom: build it with CustomProfile from the URL settings")
	}
	p, ok := profiles[n]
	if !ok {
		return Profile{}, fmt.Errorf("unknown cloud profile %q (want one of %s)", name, strings.Join(ProfileNames(), ", "))
	}
	p.Name = n
	r := strings.ToLower(strings.TrimSpace(region))
	if r != "" {
		if n != ProfileCommercial {
			return Profile{}, fmt.Errorf("cloud profile %s has no regional hosts (region %q)", n, region)
		}
		if !regions[r] {
			return Profile{}, fmt.Errorf("unknown region %q (want us, eu, uk, au or swa)", region)
		}
		p.MDEBaseURL = "https://" + r + ".api.security.microsoft.com"
	}
	return p, nil
}

// CustomProfile builds a profile from explicit URLs (a sovereign cloud not
// listed here, or the local simulator). Empty scopes default to
// "<base host>/.default". Every problem is reported.
func CustomProfile(mdeBaseURL, mdeScope, authorityHost, graphBaseURL, graphScope string) (Profile, error) {
	p := Profile{Name: ProfileCustom, MDEBaseURL: strings.TrimRight(mdeBaseURL, "/"), MDEScope: mdeScope,
		AuthorityHost: authorityHost, GraphBaseURL: strings.TrimRight(graphBaseURL, "/"), GraphScope: graphScope}
	if p.AuthorityHost != "" && !strings.HasSuffix(p.AuthorityHost, "/") {
		p.AuthorityHost += "/"
	}
	if p.MDEScope == "" && p.MDEBaseURL != "" {
		p.MDEScope = hostRoot(p.MDEBaseURL) + "/.default"
	}
	if p.GraphScope == "" && p.GraphBaseURL != "" {
		p.GraphScope = hostRoot(p.GraphBaseURL) + "/.default"
	}
	return p, p.Validate()
}

// Validate checks that every URL is absolute https and every scope ends in
// /.default.
func (p Profile) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"MDEBaseURL", p.MDEBaseURL}, {"AuthorityHost", p.AuthorityHost}, {"GraphBaseURL", p.GraphBaseURL},
	} {
		if err := checkHTTPS(f.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	for _, f := range []struct{ name, v string }{{"MDEScope", p.MDEScope}, {"GraphScope", p.GraphScope}} {
		if !strings.HasSuffix(f.v, "/.default") {
			errs = append(errs, fmt.Errorf("%s %q: want <resource>/.default", f.name, f.v))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cloud profile %s: %w", p.Name, errors.Join(errs...))
	}
	return nil
}

// KnownAuthority reports whether host is one of the public Entra sign-in
// hosts, for which instance discovery is safe; custom authorities (the
// simulator, private clouds) must disable it.
func KnownAuthority(host string) bool {
	h := strings.TrimRight(strings.ToLower(host), "/")
	return h+"/" == authorityPublic || h+"/" == authorityUSGov
}

func checkHTTPS(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: want https://host[/path] without query or user info", raw)
	}
	return nil
}

func hostRoot(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Scheme + "://" + u.Host
}
