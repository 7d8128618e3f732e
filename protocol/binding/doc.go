// Package binding speaks the channels-binding wire (workon-io/
// channels-binding 1.9.8 and its @channels-binding/core JS client): one
// WebSocket of JSON text frames {"event": "<stream>.<action>[#uid]",
// "data": …}, answered {"event": <the event as received>, "data": …} or
// {"event": …, "error": "…"}.
//
// A resource declared with a binding (config.ResourceBinding) is a
// stream: retrieve, search, search_suggestions, form (describe and
// submit), save, delete, subscribe and unsubscribe run on the resource
// service with its rules, and the first permitted request on a stream
// joins the connection to the stream's group, whose members are told of
// changes with {"event": "<stream>.updated#<pk>", "data": true} and
// "<stream>.deleted#<pk>". Which member is told of which change is the
// resource service's decision (a resource.LiveQuery per member, applied to
// every event): a connection is never told of a record its user may not
// read. Every connection also joins the groups "__all__" and, for a
// user, "user.<pk>"; Send pushes to a group, a user or everyone (the
// server API's binding_send).
//
// Other events — channels-binding's custom @bind events — go to
// Config.Events, the seam the signal handlers plug into; without one they
// are answered "No binding found for <event>".
//
// The package decodes frames, calls the resource service and encodes its
// answers; it decides no permission itself. Frames of one connection are
// handled in order (a superset of the original, which answers
// concurrently), and every reply and push of a connection goes through its
// hub session's outbox.
package binding
