// Package forwarding is the pure logic of a forward: the destinations a
// tenant allows (URL pattern, body format, where each card field goes),
// matching a requested URL against them, filling the card into the body the
// merchant sent with its card fields left blank, signing the result, and
// redacting what is stored of the request and the destination's answer.
// It touches no database and no network; the egress package sends.
//
// Presets for common processors are data (presets.json), not code.
package forwarding
