package stripesim

import (
	"fmt"
	"net/http"
)

// errorBody is Stripe's error envelope: {"error":{"type":…,"code":…,…}}.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Param   string `json:"param,omitempty"`
	Message string `json:"message"`
}

// stripeError is an error answer in Stripe's shape.
func stripeError(status int, typ, code, param, msg string) answer {
	return answer{status: status, body: marshal(errorBody{Error: errorObject{
		Type: typ, Code: code, Param: param, Message: msg,
	}})}
}

// authError is the 401 for a missing or unknown key. Like Stripe it shows
// at most the key's last four characters.
func authError(key string) answer {
	msg := "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
	if key != "" {
		shown := "****"
		if len(key) > 8 {
			shown = "***********" + key[len(key)-4:]
		}
		msg = "Invalid API Key provided: " + shown
	}
	return stripeError(http.StatusUnauthorized, "authentication_error", "api_key_invalid", "", msg)
}

// serverError is the injected 500.
func serverError() answer {
	return stripeError(http.StatusInternalServerError, "api_error", "", "",
		"An unknown error occurred (injected by stripesim).")
}

// missingParam is Stripe's 400 for a required parameter left out.
func missingParam(param string) answer {
	return stripeError(http.StatusBadRequest, "invalid_request_error", "parameter_missing", param,
		"Missing required param: "+param+".")
}

// invalidParam is a 400 for a parameter with a bad value.
func invalidParam(code, param, msg string) answer {
	return stripeError(http.StatusBadRequest, "invalid_request_error", code, param, msg)
}

// noSuch is Stripe's 404 for an unknown object id.
func noSuch(object, id, param string) answer {
	return stripeError(http.StatusNotFound, "invalid_request_error", "resource_missing", param,
		fmt.Sprintf("No such %s: '%s'", object, id))
}

// unrecognized is Stripe's 404 for a path or method it does not serve.
func unrecognized(method, path string) answer {
	return stripeError(http.StatusNotFound, "invalid_request_error", "", "",
		fmt.Sprintf("Unrecognized request URL (%s: %s).", method, path))
}
