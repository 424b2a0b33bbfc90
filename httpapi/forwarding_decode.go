package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// Decoding POST /v1/forwarding/requests as Stripe's clients send it:
// form-encoded with bracketed keys (stripe-go, curl -d), or the same fields
// as JSON.

// forwardJSON is the JSON body of POST /v1/forwarding/requests.
type forwardJSON struct {
	PaymentMethod string            `json:"payment_method"`
	URL           string            `json:"url"`
	Replacements  []string          `json:"replacements" validate:"max=10"`
	Request       *forwardedJSON    `json:"request"`
	Metadata      map[string]string `json:"metadata"`
	Expand        []string          `json:"expand" validate:"max=10"` // accepted and ignored: nothing expands
}

type forwardedJSON struct {
	Body    string                `json:"body"`
	Headers []vault.ForwardHeader `json:"headers" validate:"max=50"`
}

// maxFormIndex bounds the N of a bracketed list key such as replacements[N].
const maxFormIndex = 999

// decodeForward reads a forward from the request body, form-encoded or JSON,
// with the request's Idempotency-Key. Errors are KindBadRequest (400),
// KindTooLarge (413) or KindUnsupportedType (415); none quotes a value.
func decodeForward(c echo.Context) (vault.ForwardInput, error) {
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return vault.ForwardInput{}, tooLarge()
	case err != nil:
		return vault.ForwardInput{}, &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeBodyUnreadable, Message: "the request body could not be read", Err: err}
	}
	mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	var in vault.ForwardInput
	switch mt {
	case echo.MIMEApplicationForm:
		in, err = parseForwardForm(string(body))
	case echo.MIMEApplicationJSON:
		in, err = parseForwardJSON(body)
	default:
		return in, vault.Errorf(vault.KindUnsupportedType, vault.CodeUnsupportedMediaType,
			"the request body must be application/x-www-form-urlencoded or application/json")
	}
	in.IdempotencyKey = req.Header.Get(HeaderIdempotencyKey)
	return in, err
}

// parseForwardJSON decodes the JSON form of a forward.
func parseForwardJSON(body []byte) (vault.ForwardInput, error) {
	var j forwardJSON
	if err := decodeBody(body, &j); err != nil {
		return vault.ForwardInput{}, err
	}
	in := vault.ForwardInput{PaymentMethod: j.PaymentMethod, URL: j.URL, Replacements: j.Replacements, Metadata: j.Metadata}
	if j.Request != nil {
		in.Body, in.Headers = j.Request.Body, j.Request.Headers
	}
	return in, nil
}

// formFields gathers a form's bracketed lists by index.
type formFields struct {
	replacements map[int]string
	names        map[int]string
	values       map[int]string
}

// parseForwardForm decodes Stripe's form encoding of a forward:
// payment_method, url, request[body], replacements[N] (or replacements[]),
// request[headers][N][name] and [value], metadata[KEY], and expand[N]
// (ignored). Any other key, or a key given twice, is refused.
func parseForwardForm(body string) (vault.ForwardInput, error) {
	form, err := url.ParseQuery(body)
	if err != nil {
		return vault.ForwardInput{}, &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeInvalidForm,
			Message: "the request body is not valid application/x-www-form-urlencoded"}
	}
	in := vault.ForwardInput{}
	f := formFields{replacements: map[int]string{}, names: map[int]string{}, values: map[int]string{}}
	for _, key := range sortedKeys(form) {
		if err := f.take(&in, key, form[key]); err != nil {
			return vault.ForwardInput{}, err
		}
	}
	in.Replacements = inIndexOrder(f.replacements)
	in.Headers, err = f.headers()
	return in, err
}

// take stores one form key's values in in or f.
func (f *formFields) take(in *vault.ForwardInput, key string, vs []string) error {
	if len(vs) != 1 && key != "replacements[]" && key != "expand[]" {
		return formParamError(vault.CodeParameterDuplicate, key, "give "+echoName(key)+" once")
	}
	v := vs[0]
	switch {
	case key == "payment_method":
		in.PaymentMethod = v
	case key == "url":
		in.URL = v
	case key == "request[body]":
		in.Body = v
	case key == "replacements[]":
		for i, r := range vs {
			f.replacements[maxFormIndex+1+i] = r
		}
	case strings.HasPrefix(key, "metadata[") && strings.HasSuffix(key, "]"):
		if in.Metadata == nil {
			in.Metadata = map[string]string{}
		}
		in.Metadata[key[len("metadata["):len(key)-1]] = v
	case strings.HasPrefix(key, "expand["):
	default:
		return f.takeIndexed(key, v)
	}
	return nil
}

// takeIndexed stores replacements[N] and request[headers][N][name|value].
func (f *formFields) takeIndexed(key, v string) error {
	if i, ok := formIndex(key, "replacements[", "]"); ok {
		f.replacements[i] = v
		return nil
	}
	if i, ok := formIndex(key, "request[headers][", "][name]"); ok {
		f.names[i] = v
		return nil
	}
	if i, ok := formIndex(key, "request[headers][", "][value]"); ok {
		f.values[i] = v
		return nil
	}
	return formParamError(vault.CodeParameterUnknown, key, "unknown parameter "+echoName(key))
}

// headers pairs the headers' names and values by index.
func (f *formFields) headers() ([]vault.ForwardHeader, error) {
	var out []vault.ForwardHeader
	for _, i := range sortedInts(f.names, f.values) {
		name, okName := f.names[i]
		value, okValue := f.values[i]
		if !okName || !okValue {
			return nil, formParamError(vault.CodeParameterMissing, "request[headers]["+strconv.Itoa(i)+"]",
				"each request header needs a name and a value")
		}
		out = append(out, vault.ForwardHeader{Name: name, Value: value})
	}
	return out, nil
}

// formIndex returns N of a key prefix + N + suffix, N a decimal from 0 to
// maxFormIndex.
func formIndex(key, prefix, suffix string) (int, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, suffix)
	if !ok || num == "" || len(num) > 3 || strings.TrimLeft(num, "0123456789") != "" {
		return 0, false
	}
	n, _ := strconv.Atoi(num)
	return n, n <= maxFormIndex
}

// formParamError is a 400 naming a form key (digit runs masked).
func formParamError(code, key, msg string) error {
	return &vault.Error{Kind: vault.KindBadRequest, Code: code, Param: echoName(key), Message: msg}
}

// inIndexOrder returns m's values sorted by index.
func inIndexOrder(m map[int]string) []string {
	out := make([]string, 0, len(m))
	for _, i := range sortedInts(m) {
		out = append(out, m[i])
	}
	return out
}

// sortedInts returns the keys of the maps, without repeats, ascending.
func sortedInts(ms ...map[int]string) []int {
	seen := map[int]bool{}
	var out []int
	for _, m := range ms {
		for i := range m {
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	sort.Ints(out)
	return out
}

// sortedKeys returns the form's keys in order, so that errors are stable.
func sortedKeys(form url.Values) []string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// forwardListFilters are the query parameters of GET /v1/forwarding/requests
// besides limit and starting_after.
var forwardListFilters = []string{"ending_before", "created", "created[gt]", "created[gte]", "created[lt]", "created[lte]"}

// forwardListParams reads GET /v1/forwarding/requests' query: limit,
// starting_after, ending_before and created (unix seconds, exact) or
// created[gt|gte|lt|lte], compared at Stripe's one-second precision.
func forwardListParams(c echo.Context) (vault.ListForwardingParams, error) {
	pg, err := readPaging(c, func(v string) (string, bool) { return v, strings.HasPrefix(v, "fwdreq_") })
	if err != nil {
		return vault.ListForwardingParams{}, err
	}
	p := vault.ListForwardingParams{Limit: pg.limit, StartingAfter: pg.after, EndingBefore: c.QueryParam("ending_before")}
	for _, b := range createdBounds {
		v := c.QueryParam(b.param)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<40 {
			return p, &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid, Param: b.param,
				Message: b.param + " must be a unix time in seconds"}
		}
		b.apply(&p, time.Unix(n+b.shift, 0).UTC())
	}
	return p, nil
}

// createdBound is one created filter: a lower bound (from) or an upper one,
// at the given whole second plus shift.
type createdBound struct {
	param string
	from  bool
	shift int64
}

// createdBounds are the created filters, each as an inclusive lower or
// exclusive upper bound.
var createdBounds = []createdBound{{"created", true, 0}, {"created", false, 1}, {"created[gte]", true, 0},
	{"created[gt]", true, 1}, {"created[lt]", false, 0}, {"created[lte]", false, 1}}

// apply narrows p's bounds by at.
func (b createdBound) apply(p *vault.ListForwardingParams, at time.Time) {
	switch {
	case b.from && (p.CreatedFrom == nil || at.After(*p.CreatedFrom)):
		p.CreatedFrom = &at
	case !b.from && (p.CreatedUntil == nil || at.Before(*p.CreatedUntil)):
		p.CreatedUntil = &at
	}
}
