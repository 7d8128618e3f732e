// Package dashboard holds the admin dashboard served at /dashboard/: the
// HTTP handlers, their HTML templates and the static assets (one CSS
// and one JavaScript file, no build step), all embedded in the binary.
//
// Pages are rendered on the server with html/template and work without
// JavaScript: every action is a form posted with the session's CSRF
// token, answered with a redirect (or the form again with its errors).
// dashboard.js enhances them: the overview's figures and charts, a
// channel's live tail and the resource tables follow the server through
// Server-Sent Events; the connection list refreshes itself. The live
// views are hub observers (hub.Observe): they receive what a channel
// carries without being its subscribers or appearing in its presence.
//
// Access: one admin password (or its bcrypt hash) from config.Dashboard;
// a sign-in starts a server-side session (HttpOnly, SameSite=Strict
// cookie, Secure behind TLS) that expires after dashboard.session_ttl.
// Every request but the login page and the static files needs the
// session, or it is redirected to the login page; every state-changing
// request needs the session's CSRF token. Sign-ins are rate limited per
// address and globally (internal/signin).
//
// The dashboard acts on the server's services as the server: resource
// writes go through resource.Service with resource.AsServer(), so every
// validation rule and hook applies and subscribers get their events;
// publications go through the hub; jobs through the queue.
//
// A Dashboard owns one goroutine, the sampler behind the overview's
// charts; Close stops it and ends the live streams.
package dashboard
