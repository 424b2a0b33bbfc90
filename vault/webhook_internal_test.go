package vault

// EnqueueEvent exposes enqueueEvent, the import jobs' way into the outbox,
// to the external tests.
var EnqueueEvent = enqueueEvent
