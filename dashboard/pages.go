package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/queue"
)

// maxListed bounds the rows of the connection and channel lists; the
// search narrows them.
const maxListed = 200

// connRow is a row of the connection list.
type connRow struct {
	ID, User, Transport, Protocol, RemoteAddr string
	Since                                     time.Time
	Subscriptions                             []string
}

type connectionsData struct {
	Query   string
	Rows    []connRow
	Matched int
	Total   int
	Max     int
}

// matches reports whether a connection matches every word of a search.
func (c *connRow) matches(words []string) bool {
	for _, w := range words {
		hay := []string{c.ID, c.User, c.Transport, c.Protocol, c.RemoteAddr}
		hay = append(hay, c.Subscriptions...)
		found := false
		for _, h := range hay {
			if strings.Contains(strings.ToLower(h), w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (d *Dashboard) connectionsData(q string) connectionsData {
	sessions := d.cfg.Hub.Sessions()
	words := strings.Fields(strings.ToLower(q))
	out := connectionsData{Query: q, Total: len(sessions), Max: maxListed}
	rows := make([]connRow, 0, min(len(sessions), maxListed))
	for _, s := range sessions {
		ci := s.Conn()
		subs := s.Subscribed()
		slices.Sort(subs)
		row := connRow{ID: s.ID(), User: s.User(), Transport: ci.Transport, Protocol: ci.Protocol, RemoteAddr: ci.RemoteAddr, Since: ci.Since, Subscriptions: subs}
		if !row.matches(words) {
			continue
		}
		out.Matched++
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b connRow) int {
		return cmp.Or(b.Since.Compare(a.Since), cmp.Compare(a.ID, b.ID))
	})
	if len(rows) > maxListed {
		rows = rows[:maxListed]
	}
	out.Rows = rows
	return out
}

func (d *Dashboard) connections(w http.ResponseWriter, r *http.Request, s *session) {
	name := "connections.html"
	if r.URL.Query().Get("fragment") == "1" {
		name = "connections_rows.html"
	}
	d.render(w, r, s, http.StatusOK, name, "Connections", "connections", d.connectionsData(r.URL.Query().Get("q")))
}

// disconnect closes one connection (form fields id, q).
func (d *Dashboard) disconnect(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PostFormValue("id")
	back := Prefix + "connections"
	if q := r.PostFormValue("q"); q != "" {
		back += "?q=" + url.QueryEscape(q)
	}
	sess := d.cfg.Hub.Session(id)
	if sess == nil {
		s.setFlash("Connection " + id + " is gone already.")
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	sess.Close(hub.CloseDisconnected, "disconnected by an administrator")
	// The close is asynchronous: give it a moment, so that the list the
	// browser is sent back to no longer shows the connection.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Second)
wait:
	for d.cfg.Hub.Session(id) != nil {
		select {
		case <-tick.C:
		case <-deadline:
			break wait
		case <-r.Context().Done():
			return
		}
	}
	d.log.Info("dashboard: connection disconnected", "conn", id, "user", sess.User(), "remote", r.RemoteAddr)
	who := sess.User()
	if who == "" {
		who = "anonymous"
	}
	s.setFlash(fmt.Sprintf("Disconnected %s (%s).", id, who))
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// channelRow is a row of the channel list.
type channelRow struct {
	Name        string
	Subscribers int
	Namespace   string
	Presence    bool
	History     int
	// Present counts the channel's presence across the cluster (when the
	// namespace keeps presence; -1 when it could not be read).
	Present, PresentUsers int
}

type channelsData struct {
	Query   string
	Rows    []channelRow
	Matched int
	Total   int
	Max     int
}

// namespace returns a channel's namespace name and options ("" for the
// default namespace), as the hub resolves them.
func (d *Dashboard) namespace(ch string) (string, config.ChannelOptions, bool) {
	chans := d.cfg.Config.Channels
	ns, _, ok := strings.Cut(ch, ":")
	if !ok {
		return "", chans.Default, true
	}
	for _, n := range chans.Namespaces {
		if n.Name == ns {
			return ns, n.ChannelOptions, true
		}
	}
	return ns, config.ChannelOptions{}, strings.HasPrefix(ns, "$")
}

func (d *Dashboard) channels(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query().Get("q")
	all := d.cfg.Hub.Channels()
	out := channelsData{Query: q, Total: len(all), Max: maxListed}
	words := strings.Fields(strings.ToLower(q))
	for name, n := range all {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(strings.ToLower(name), w)
		}
		if !ok {
			continue
		}
		out.Matched++
		ns, opts, _ := d.namespace(name)
		out.Rows = append(out.Rows, channelRow{Name: name, Subscribers: n, Namespace: ns, Presence: opts.Presence, History: opts.HistorySize})
	}
	slices.SortFunc(out.Rows, func(a, b channelRow) int {
		return cmp.Or(cmp.Compare(b.Subscribers, a.Subscribers), cmp.Compare(a.Name, b.Name))
	})
	if len(out.Rows) > maxListed {
		out.Rows = out.Rows[:maxListed]
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	for i := range out.Rows {
		row := &out.Rows[i]
		if !row.Presence {
			continue
		}
		st, err := d.cfg.Hub.PresenceStats(ctx, row.Name)
		if err != nil {
			row.Present = -1
			continue
		}
		row.Present, row.PresentUsers = st.NumClients, st.NumUsers
	}
	d.render(w, r, s, http.StatusOK, "channels.html", "Channels", "channels", out)
}

type channelData struct {
	Name        string
	Namespace   string
	Options     config.ChannelOptions
	Known       bool
	Reserved    bool
	Subscribers int
	Presence    []switchyard.ClientInfo
	History     []switchyard.Publication
	Position    switchyard.StreamPosition
	Errors      []string
	// Message is the publish form's text (kept after an error).
	Message      string
	PublishError string
}

func (d *Dashboard) channelData(r *http.Request, name string) channelData {
	ctx, cancel := requestContext(r)
	defer cancel()
	c := channelData{Name: name, Reserved: strings.HasPrefix(name, "$"), Message: "{\n  \"text\": \"hello\"\n}"}
	c.Namespace, c.Options, c.Known = d.namespace(name)
	c.Subscribers = d.cfg.Hub.Channels()[name]
	if c.Options.Presence {
		p, err := d.cfg.Hub.Presence(ctx, nil, name)
		if err != nil {
			c.Errors = append(c.Errors, "Presence: "+switchyard.ErrorMessage(err))
		}
		slices.SortFunc(p, func(a, b switchyard.ClientInfo) int {
			return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.ClientID, b.ClientID))
		})
		c.Presence = p
	}
	if c.Options.HistorySize > 0 {
		pubs, pos, err := d.cfg.Hub.History(ctx, nil, name, 20, nil, true)
		if err != nil {
			c.Errors = append(c.Errors, "History: "+switchyard.ErrorMessage(err))
		}
		c.History, c.Position = pubs, pos
	}
	return c
}

func (d *Dashboard) channel(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.URL.Query().Get("name"))
	if name == "" {
		http.Redirect(w, r, Prefix+"channels", http.StatusSeeOther)
		return
	}
	d.render(w, r, s, http.StatusOK, "channel.html", name, "channels", d.channelData(r, name))
}

// publish publishes a JSON message to a channel as the server (form
// fields channel, data). Reserved ("$") channels are refused, as on the
// server API: their subscribers rely on the server's events' shape.
func (d *Dashboard) publish(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PostFormValue("channel")
	data := r.PostFormValue("data")
	fail := func(status int, msg string) {
		c := d.channelData(r, name)
		c.Message, c.PublishError = data, msg
		d.render(w, r, s, status, "channel.html", name, "channels", c)
	}
	if strings.HasPrefix(name, "$") {
		fail(http.StatusForbidden, "Channels starting with $ are the server's own: they cannot be published to.")
		return
	}
	if !json.Valid([]byte(data)) {
		fail(http.StatusBadRequest, "The message must be JSON, such as {\"text\": \"hello\"} or \"hello\".")
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	sp, err := d.cfg.Hub.Publish(ctx, nil, name, json.RawMessage(data))
	if err != nil {
		code := switchyard.ErrorCode(err)
		if code == switchyard.CodeInternal {
			d.log.Error("dashboard: publish failed", "channel", name, "err", err)
		}
		fail(switchyard.HTTPStatus(code), switchyard.ErrorMessage(err))
		return
	}
	d.log.Info("dashboard: published", "channel", name, "remote", r.RemoteAddr)
	if sp.Offset > 0 {
		s.setFlash(fmt.Sprintf("Published to %s (offset %d).", name, sp.Offset))
	} else {
		s.setFlash("Published to " + name + ".")
	}
	http.Redirect(w, r, Prefix+"channel?name="+url.QueryEscape(name), http.StatusSeeOther)
}

// signalRow is a registered signal.
type signalRow struct {
	Name     string
	Handlers int
	Declared *config.Signal
	Webhook  string // redacted
}

type queuesData struct {
	Signals   []signalRow
	NoSignals bool
	Stats     []queue.Stats
	States    []string
	Failed    []queue.Info
	Dead      []queue.Info
	Errors    []string
	NoQueues  bool
}

// jobStates are the columns of the queue table, in a job's life order.
var jobStates = []string{queue.StateAvailable, queue.StateScheduled, queue.StateRunning, queue.StateRetryable, queue.StateCompleted, queue.StateCancelled, queue.StateDiscarded}

func (d *Dashboard) queues(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	out := queuesData{States: jobStates, NoSignals: d.cfg.Signals == nil, NoQueues: d.cfg.Queue == nil}
	if d.cfg.Signals != nil {
		declared := map[string]*config.Signal{}
		for i := range d.cfg.Config.Signals.Declared {
			sg := &d.cfg.Config.Signals.Declared[i]
			declared[sg.Name] = sg
		}
		for name, n := range d.cfg.Signals.Signals() {
			row := signalRow{Name: name, Handlers: n, Declared: declared[name]}
			if row.Declared != nil {
				row.Webhook = config.RedactURL(row.Declared.Webhook)
			}
			out.Signals = append(out.Signals, row)
		}
		slices.SortFunc(out.Signals, func(a, b signalRow) int { return cmp.Compare(a.Name, b.Name) })
	}
	if d.cfg.Queue != nil {
		var err error
		if out.Stats, err = d.cfg.Queue.Stats(ctx); err != nil {
			out.Errors = append(out.Errors, "Queue statistics: "+err.Error())
		}
		if out.Failed, err = d.cfg.Queue.Jobs(ctx, queue.ListParams{State: queue.StateRetryable, Limit: 50}); err != nil {
			out.Errors = append(out.Errors, "Failed jobs: "+err.Error())
		}
		if out.Dead, err = d.cfg.Queue.Jobs(ctx, queue.ListParams{State: "dead", Limit: 50}); err != nil {
			out.Errors = append(out.Errors, "Dead jobs: "+err.Error())
		}
	}
	d.render(w, r, s, http.StatusOK, "queues.html", "Signals & queues", "queues", out)
}

func (d *Dashboard) jobRetry(w http.ResponseWriter, r *http.Request, s *session) {
	d.jobAction(w, r, s, "retried", d.cfg.Queue.Retry)
}

func (d *Dashboard) jobDiscard(w http.ResponseWriter, r *http.Request, s *session) {
	d.jobAction(w, r, s, "discarded", d.cfg.Queue.Discard)
}

// jobAction retries or discards the job of the form's id.
func (d *Dashboard) jobAction(w http.ResponseWriter, r *http.Request, s *session, what string, act func(ctx context.Context, id int64) (queue.Info, error)) {
	if d.cfg.Queue == nil {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "This server has no queues.")
		return
	}
	id, err := strconv.ParseInt(r.PostFormValue("id"), 10, 64)
	if err != nil || id <= 0 {
		d.fail(w, r, s, http.StatusBadRequest, "bad_request", "The job id must be a positive integer.")
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	in, err := act(ctx, id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		s.setFlash(fmt.Sprintf("There is no job %d.", id))
	case errors.Is(err, queue.ErrState):
		s.setFlash(fmt.Sprintf("Job %d cannot be %s: %s.", id, what, strings.TrimPrefix(err.Error(), "queue: ")))
	case err != nil:
		d.log.Error("dashboard: job action failed", "job", id, "action", what, "err", err)
		s.setFlash(fmt.Sprintf("Job %d could not be %s (the log says why).", id, what))
	default:
		d.log.Info("dashboard: job "+what, "job", id, "queue", in.Queue, "remote", r.RemoteAddr)
		s.setFlash(fmt.Sprintf("Job %d %s: it is now %s.", id, what, in.State))
	}
	http.Redirect(w, r, Prefix+"queues", http.StatusSeeOther)
}

func (d *Dashboard) configPage(w http.ResponseWriter, r *http.Request, s *session) {
	text, err := effectiveYAML(d.cfg.Config)
	if err != nil {
		d.log.Error("dashboard: rendering the configuration failed", "err", err)
		d.fail(w, r, s, http.StatusInternalServerError, "internal", "The configuration could not be shown (the log says why).")
		return
	}
	d.render(w, r, s, http.StatusOK, "config.html", "Configuration", "config", map[string]any{"YAML": text})
}
